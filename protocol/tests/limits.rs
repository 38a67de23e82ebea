//! Each kind's maximum holds its largest possible frame: every bounded field
//! at its bound, every number at its widest varint. A maximum that was too
//! small would make a valid frame unsendable.

// Test helpers outside #[test] fns may panic too (clippy.toml covers only those).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use spider_protocol::bytes::{BoundedBytes, BoundedString, BoundedVec, FixedBytes};
use spider_protocol::codec;
use spider_protocol::error::{ErrorCode, ErrorDetail};
use spider_protocol::ids::*;
use spider_protocol::keys::*;
use spider_protocol::message::*;
use spider_protocol::name::{MAX_NAME_LEN, RoomName, Username};
use spider_protocol::{ClientFrame, MAX_FRAME_LEN, ServerFrame};

fn bytes<const M: usize>() -> BoundedBytes<M> {
    BoundedBytes::new(vec![0xff; M]).unwrap()
}
fn text<const M: usize>() -> BoundedString<M> {
    BoundedString::new("x".repeat(M)).unwrap()
}
fn full<T: Clone, const M: usize>(item: T) -> BoundedVec<T, M> {
    BoundedVec::new(vec![item; M]).unwrap()
}
fn user() -> UserId {
    UserId::from_bytes([0xff; 16])
}
fn uname() -> Username {
    Username::parse(&"u".repeat(MAX_NAME_LEN)).unwrap()
}
fn rname() -> RoomName {
    RoomName::parse(&"r".repeat(MAX_NAME_LEN)).unwrap()
}
fn sig() -> Signature {
    FixedBytes([0xff; 64])
}
fn identity() -> IdentityKeys {
    IdentityKeys {
        signing: FixedBytes([0xff; 32]),
        dh: FixedBytes([0xff; 32]),
        binding: sig(),
    }
}
fn kem() -> KemPreKey {
    KemPreKey {
        id: PreKeyId(u32::MAX),
        public: FixedBytes([0xff; KEM_PUBLIC_LEN]),
        signature: sig(),
    }
}
fn spk() -> SignedPreKey {
    SignedPreKey {
        id: PreKeyId(u32::MAX),
        public: FixedBytes([0xff; 32]),
        signature: sig(),
    }
}
fn upload() -> PreKeyUpload {
    PreKeyUpload {
        signed_prekey: Some(spk()),
        last_resort_kem_prekey: Some(kem()),
        one_time_prekeys: full(OneTimePreKey {
            id: PreKeyId(u32::MAX),
            public: FixedBytes([0xff; 32]),
        }),
        one_time_kem_prekeys: full(kem()),
    }
}
fn addr() -> DeviceAddress {
    DeviceAddress {
        user: user(),
        device: DeviceId(u32::MAX),
    }
}
fn change() -> SignedRoomChange {
    SignedRoomChange {
        change: RoomChange {
            room: RoomId::from_bytes([0xff; 16]),
            epoch: u64::MAX,
            actor: addr(),
            at: Timestamp(u64::MAX),
            action: RoomAction::SetRole {
                user: user(),
                role: Role::Owner,
            },
        },
        signature: sig(),
    }
}

fn fits_client(f: ClientFrame) {
    let (name, max) = (f.kind().name(), f.kind().max_len());
    let len = postcard::to_allocvec(&f).unwrap().len();
    assert!(
        len <= max,
        "{name}: largest frame is {len} bytes, maximum {max}"
    );
    assert!(max <= MAX_FRAME_LEN);
    codec::encode_body(&f).unwrap();
}
fn fits_server(f: ServerFrame) {
    let (name, max) = (f.kind().name(), f.kind().max_len());
    let len = postcard::to_allocvec(&f).unwrap().len();
    assert!(
        len <= max,
        "{name}: largest frame is {len} bytes, maximum {max}"
    );
    codec::encode_body(&f).unwrap();
}

const REQ: RequestId = RequestId(u32::MAX);

#[test]
fn largest_client_frames_fit_their_kind_maximum() {
    fits_client(ClientFrame::Hello(Hello {
        versions: full(u16::MAX),
        agent: text(),
    }));
    fits_client(ClientFrame::Register(Register {
        req: REQ,
        username: uname(),
        identity: identity(),
        prekeys: upload(),
        auth: sig(),
    }));
    fits_client(ClientFrame::AddDevice(AddDevice {
        req: REQ,
        user: user(),
        identity: identity(),
        prekeys: upload(),
        approver: DeviceId(u32::MAX),
        approval: sig(),
        auth: sig(),
    }));
    fits_client(ClientFrame::UploadPreKeys(UploadPreKeys {
        req: REQ,
        prekeys: upload(),
    }));
    fits_client(ClientFrame::SendDirect(SendDirect {
        req: REQ,
        message_id: MessageId::from_bytes([0xff; 16]),
        to: user(),
        copies: full(DeviceCiphertext {
            device: DeviceId(u32::MAX),
            ciphertext: bytes(),
        }),
    }));
    fits_client(ClientFrame::SendRoom(SendRoom {
        req: REQ,
        message_id: MessageId::from_bytes([0xff; 16]),
        room: RoomId::from_bytes([0xff; 16]),
        epoch: u64::MAX,
        devices: FixedBytes([0xff; 32]),
        ciphertext: bytes(),
    }));
    fits_client(ClientFrame::SendEphemeral(SendEphemeral {
        to: EphemeralTarget::User {
            user: user(),
            copies: full(EphemeralCopy {
                device: DeviceId(u32::MAX),
                payload: bytes(),
            }),
        },
    }));
    fits_client(ClientFrame::ChangeRoom(ChangeRoom {
        req: REQ,
        change: change(),
    }));
    fits_client(ClientFrame::SetProfile(SetProfile {
        req: REQ,
        blob: bytes(),
    }));
    fits_client(ClientFrame::BlobChunk(BlobChunk {
        blob: BlobId::from_bytes([0xff; 32]),
        offset: u64::MAX,
        data: bytes(),
    }));
    fits_client(ClientFrame::LookupUser(LookupUser {
        req: REQ,
        who: UserRef::Name(uname()),
    }));
}

#[test]
fn largest_server_frames_fit_their_kind_maximum() {
    fits_server(ServerFrame::Welcome(Welcome {
        version: u16::MAX,
        relay_name: text(),
        challenge: FixedBytes([0xff; 32]),
        server_time: Timestamp(u64::MAX),
        idle_timeout_ms: u32::MAX,
    }));
    fits_server(ServerFrame::Error(ErrorFrame {
        req: Some(REQ),
        code: ErrorCode(u16::MAX),
        message: text(),
        detail: ErrorDetail::Devices {
            missing: full(DeviceId(u32::MAX)),
            extra: full(DeviceId(u32::MAX)),
        },
    }));
    fits_server(ServerFrame::PreKeyBundles(PreKeyBundles {
        req: REQ,
        user: user(),
        bundles: full(PreKeyBundle {
            device: DeviceId(u32::MAX),
            identity: identity(),
            signed_prekey: spk(),
            kem_prekey: kem(),
            kem_prekey_is_one_time: true,
            one_time_prekey: Some(OneTimePreKey {
                id: PreKeyId(u32::MAX),
                public: FixedBytes([0xff; 32]),
            }),
        }),
    }));
    fits_server(ServerFrame::UserInfo(UserInfo {
        req: REQ,
        user: user(),
        username: uname(),
        devices: full(DeviceInfo {
            device: DeviceId(u32::MAX),
            identity: identity(),
        }),
    }));
    for body in [
        EnvelopeBody::Room {
            room: RoomId::from_bytes([0xff; 16]),
            ciphertext: bytes(),
        },
        EnvelopeBody::Direct {
            ciphertext: bytes(),
        },
        EnvelopeBody::RoomChange(change()),
    ] {
        fits_server(ServerFrame::Deliver(Deliver {
            seq: Seq(u64::MAX),
            envelope: Envelope {
                message_id: MessageId::from_bytes([0xff; 16]),
                from: addr(),
                sent_at: Timestamp(u64::MAX),
                body,
            },
        }));
    }
    fits_server(ServerFrame::Ephemeral(Ephemeral {
        from: addr(),
        room: Some(RoomId::from_bytes([0xff; 16])),
        payload: bytes(),
    }));
    fits_server(ServerFrame::RoomInfo(RoomInfo {
        req: REQ,
        room: RoomId::from_bytes([0xff; 16]),
        name: rname(),
        epoch: u64::MAX,
        members: full(Member {
            user: user(),
            username: uname(),
            role: Role::Owner,
            devices: full(DeviceId(u32::MAX)),
        }),
        invited: full(user()),
    }));
    fits_server(ServerFrame::RoomList(RoomList {
        req: REQ,
        rooms: full(RoomSummary {
            room: RoomId::from_bytes([0xff; 16]),
            name: rname(),
            role: Some(Role::Owner),
            members: u32::MAX,
        }),
    }));
    fits_server(ServerFrame::Contacts(Contacts {
        req: REQ,
        contacts: full(Contact {
            user: user(),
            username: uname(),
            presence: Some(Presence::Offline {
                last_seen: Some(Timestamp(u64::MAX)),
            }),
        }),
    }));
    fits_server(ServerFrame::Profile(Profile {
        req: REQ,
        user: user(),
        blob: Some(bytes()),
    }));
    fits_server(ServerFrame::BlobChunk(BlobChunk {
        blob: BlobId::from_bytes([0xff; 32]),
        offset: u64::MAX,
        data: bytes(),
    }));
    fits_server(ServerFrame::BlobEnd(BlobEnd {
        req: REQ,
        blob: BlobId::from_bytes([0xff; 32]),
        size: u64::MAX,
        digest: FixedBytes([0xff; 32]),
    }));
    fits_server(ServerFrame::Drain(Drain {
        reconnect_after_ms: u32::MAX,
        alternative: Some(text()),
    }));
}

#[test]
fn a_field_one_over_its_bound_is_refused_on_decode() {
    // A room message whose ciphertext is MAX_CIPHERTEXT_LEN + 1 bytes: the
    // frame-level maximum might allow the bytes, the field's bound does not.
    let mut body = vec![spider_protocol::ClientKind::SendRoom.tag(), 1];
    // message id, room, epoch 0, devices digest.
    body.extend_from_slice(&[0; 32 + 1 + 32]);
    let n = MAX_CIPHERTEXT_LEN + 1;
    body.extend_from_slice(&postcard::to_allocvec(&(n as u32)).unwrap());
    body.extend(std::iter::repeat_n(0u8, n));
    assert!(codec::decode_body::<ClientFrame>(&body).is_err());
    // And exactly at the bound it decodes.
    let mut ok = vec![spider_protocol::ClientKind::SendRoom.tag(), 1];
    ok.extend_from_slice(&[0; 32 + 1 + 32]);
    ok.extend_from_slice(&postcard::to_allocvec(&(MAX_CIPHERTEXT_LEN as u32)).unwrap());
    ok.extend(std::iter::repeat_n(0u8, MAX_CIPHERTEXT_LEN));
    assert!(codec::decode_body::<ClientFrame>(&ok).is_ok());
}
