//! docs/protocol.md checked against the code.
//!
//! The document's hex examples, frame-size tables, error table, constants
//! table and frame headings are all compared with what this crate encodes and
//! declares. Each example frame is built here from fixed values (ids made of
//! repeated bytes, no RNG, no clock), encoded, and printed 16 bytes a line;
//! the block between `<!-- example: NAME -->` and `<!-- /example -->` in the
//! document must be exactly that text.
//!
//! To regenerate the example blocks from the code, run
//! `SPIDER_BLESS=1 cargo test -p spider-protocol --test spec`; the blocks
//! must already exist in the document (an empty fenced block will do), since
//! the test does not know where new ones belong. The tables are never
//! rewritten: on a mismatch the test prints the rows the code expects.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test file: clippy.toml allows these in #[test] fns, and the helpers here are test code too"
)]

use std::fmt::Write as _;
use std::path::PathBuf;

use spider_protocol::bytes::{BoundedBytes, BoundedString, BoundedVec, FixedBytes};
use spider_protocol::codec::{self, LEN_PREFIX};
use spider_protocol::error::{ErrorCode, ErrorDetail};
use spider_protocol::ids::{
    BlobId, DeviceAddress, DeviceId, MessageId, PreKeyId, RequestId, RoomId, Seq, Timestamp, UserId,
};
use spider_protocol::keys::{
    IdentityKeys, KEM_CIPHERTEXT_LEN, KEM_PUBLIC_LEN, KemPreKey,
    MAX_ONE_TIME_KEM_PREKEYS_PER_UPLOAD, MAX_ONE_TIME_PREKEYS_PER_UPLOAD, OneTimePreKey,
    PreKeyBundle, PreKeyCounts, SignedPreKey,
};
use spider_protocol::message::{
    self, Ack, AuthOk, BlobChunk, CaughtUp, ChangeRoom, Deliver, DeviceCiphertext, Drain, Envelope,
    EnvelopeBody, EphemeralTarget, ErrorFrame, Login, Ping, PreKeyBundles, RoomAction, RoomChange,
    SendDirect, SendEphemeral, Sent, SignedRoomChange, Welcome,
};
use spider_protocol::name::{MAX_NAME_LEN, MIN_NAME_LEN, Username};
use spider_protocol::version;
use spider_protocol::{ClientFrame, ClientKind, MAX_FRAME_LEN, ServerFrame, ServerKind};

// ---------------------------------------------------------------- the examples

/// Signature labels from spider-crypto's `domain` module (this crate does not
/// depend on spider-crypto; the document says the crypto crate is the
/// authority).
const SIG_AUTH_CHALLENGE: &[u8] = b"spider/v1/sig/auth-challenge";
const SIG_ROOM_CHANGE: &[u8] = b"spider/v1/sig/room-change";

/// How an example is written out.
enum Example {
    /// A client frame body (one WebSocket message).
    Client(ClientFrame),
    /// A client frame with its 4-byte length prefix (QUIC stream form).
    ClientStream(ClientFrame),
    /// A relay frame body.
    Server(ServerFrame),
    /// Bytes that are not a frame (the input of a signature).
    Raw(Vec<u8>),
}

impl Example {
    fn encode(&self) -> Vec<u8> {
        match self {
            Self::Client(f) => codec::encode_body(f).unwrap(),
            Self::Server(f) => codec::encode_body(f).unwrap(),
            Self::ClientStream(f) => {
                let mut out = Vec::new();
                codec::encode_stream(f, &mut out).unwrap();
                out
            }
            Self::Raw(b) => b.clone(),
        }
    }
}

fn user(b: u8) -> UserId {
    UserId::from_bytes([b; 16])
}

fn room(b: u8) -> RoomId {
    RoomId::from_bytes([b; 16])
}

fn addr(u: u8, d: u32) -> DeviceAddress {
    DeviceAddress {
        user: user(u),
        device: DeviceId(d),
    }
}

fn bytes<const M: usize>(b: &[u8]) -> BoundedBytes<M> {
    BoundedBytes::new(b.to_vec()).unwrap()
}

fn text<const M: usize>(s: &str) -> BoundedString<M> {
    BoundedString::new(s).unwrap()
}

/// 2023-11-14T22:13:20Z, in milliseconds.
const T0: u64 = 1_700_000_000_000;

/// The room change of the `client-change-room-kick` example.
fn kick_change() -> RoomChange {
    RoomChange {
        room: room(0x77),
        epoch: 6,
        actor: addr(0xaa, 1),
        at: Timestamp(T0 + 60_000),
        action: RoomAction::Kick { user: user(0xdd) },
    }
}

/// The relay name of the welcome example, which the auth signature covers.
const RELAY_NAME: &str = "relay.example";

/// The bytes a device signs to authenticate (docs §6.1): label || 0x00, then
/// each of relay name, TLS exporter value and challenge as a u16 big-endian
/// length and the bytes.
fn auth_signed_bytes(relay_name: &str, exporter: &[u8], challenge: &[u8]) -> Vec<u8> {
    let mut b = SIG_AUTH_CHALLENGE.to_vec();
    b.push(0);
    for field in [relay_name.as_bytes(), exporter, challenge] {
        b.extend_from_slice(&u16::try_from(field.len()).unwrap().to_be_bytes());
        b.extend_from_slice(field);
    }
    b
}

/// The documented auth payload is what spider-crypto actually signs: a
/// signature made by `sign_auth_challenge` verifies over the documented bytes.
#[test]
fn documented_auth_payload_is_what_spider_crypto_signs() {
    let identity = spider_crypto::keys::IdentityKeyPair::from_secret_bytes(&[7; 64]);
    let sig = identity
        .sign_auth_challenge(RELAY_NAME, &[0xe5; 32], &[0x11; 32])
        .unwrap();
    let documented = auth_signed_bytes(RELAY_NAME, &[0xe5; 32], &[0x11; 32]);
    spider_crypto::primitives::ed25519_verify_strict(
        identity.public().signing_key_bytes(),
        &documented,
        &sig,
    )
    .expect("the signature covers exactly the documented bytes");
    let mut wrong = documented.clone();
    wrong[SIG_AUTH_CHALLENGE.len() + 2] ^= 1; // a length byte
    assert!(
        spider_crypto::primitives::ed25519_verify_strict(
            identity.public().signing_key_bytes(),
            &wrong,
            &sig,
        )
        .is_err()
    );
}

/// Every example in the document, by marker name, in document order.
fn examples() -> Vec<(&'static str, Example)> {
    let hello = version::hello("example-bot/1.0");
    let unsupported = {
        let mut h = hello.clone();
        h.versions = BoundedVec::new(vec![7]).unwrap();
        version::negotiate(&h, version::SUPPORTED_VERSIONS).unwrap_err()
    };

    let auth_payload = auth_signed_bytes(RELAY_NAME, &[0xe5; 32], &[0x11; 32]);
    let room_change_payload = {
        let mut b = SIG_ROOM_CHANGE.to_vec();
        b.push(0);
        b.extend_from_slice(&kick_change().signed_bytes());
        b
    };

    let bundle = PreKeyBundle {
        device: DeviceId(2),
        identity: IdentityKeys {
            signing: FixedBytes([0x01; 32]),
            dh: FixedBytes([0x02; 32]),
            binding: FixedBytes([0x03; 64]),
        },
        signed_prekey: SignedPreKey {
            id: PreKeyId(7),
            public: FixedBytes([0x04; 32]),
            signature: FixedBytes([0x05; 64]),
        },
        kem_prekey: KemPreKey {
            id: PreKeyId(300),
            public: FixedBytes([0x06; KEM_PUBLIC_LEN]),
            signature: FixedBytes([0x07; 64]),
        },
        kem_prekey_is_one_time: true,
        one_time_prekey: Some(OneTimePreKey {
            id: PreKeyId(9),
            public: FixedBytes([0x08; 32]),
        }),
    };

    vec![
        (
            "client-hello",
            Example::Client(ClientFrame::Hello(hello.clone())),
        ),
        (
            "client-hello-stream",
            Example::ClientStream(ClientFrame::Hello(hello)),
        ),
        (
            "server-welcome",
            Example::Server(ServerFrame::Welcome(Welcome {
                version: version::PROTOCOL_VERSION,
                relay_name: text(RELAY_NAME),
                challenge: FixedBytes([0x11; 32]),
                server_time: Timestamp(T0),
                idle_timeout_ms: 60_000,
            })),
        ),
        (
            "server-error-unsupported-version",
            Example::Server(ServerFrame::Error(unsupported)),
        ),
        ("auth-signed-bytes", Example::Raw(auth_payload)),
        (
            "client-login",
            Example::Client(ClientFrame::Login(Login {
                req: RequestId(1),
                user: user(0xaa),
                device: DeviceId(1),
                auth: FixedBytes([0x5a; 64]),
            })),
        ),
        (
            "server-auth-ok",
            Example::Server(ServerFrame::AuthOk(AuthOk {
                req: RequestId(1),
                user: user(0xaa),
                username: Username::parse("alice").unwrap(),
                device: DeviceId(1),
                prekeys: PreKeyCounts {
                    one_time: 100,
                    one_time_kem: 50,
                },
                queued: 2,
            })),
        ),
        (
            "server-caught-up",
            Example::Server(ServerFrame::CaughtUp(CaughtUp {
                last: Some(Seq(301)),
            })),
        ),
        (
            "client-send-direct",
            Example::Client(ClientFrame::SendDirect(SendDirect {
                req: RequestId(2),
                message_id: MessageId::from_bytes([0x33; 16]),
                to: user(0xbb),
                copies: BoundedVec::new(vec![
                    DeviceCiphertext {
                        device: DeviceId(1),
                        ciphertext: bytes(&[0xc1; 5]),
                    },
                    DeviceCiphertext {
                        device: DeviceId(2),
                        ciphertext: bytes(&[0xc2; 5]),
                    },
                ])
                .unwrap(),
            })),
        ),
        (
            "server-sent",
            Example::Server(ServerFrame::Sent(Sent {
                req: RequestId(2),
                message_id: MessageId::from_bytes([0x33; 16]),
                sent_at: Timestamp(T0 + 123),
            })),
        ),
        (
            "server-error-mismatched-devices",
            Example::Server(ServerFrame::Error(ErrorFrame {
                req: Some(RequestId(2)),
                code: ErrorCode::MISMATCHED_DEVICES,
                message: text("copies do not match the recipient's devices"),
                detail: ErrorDetail::Devices {
                    missing: BoundedVec::new(vec![DeviceId(3)]).unwrap(),
                    extra: BoundedVec::new(vec![DeviceId(2)]).unwrap(),
                },
            })),
        ),
        (
            "server-deliver-direct",
            Example::Server(ServerFrame::Deliver(Deliver {
                seq: Seq(300),
                envelope: Envelope {
                    message_id: MessageId::from_bytes([0x44; 16]),
                    from: addr(0xbb, 2),
                    sent_at: Timestamp(T0 + 456),
                    body: EnvelopeBody::Direct {
                        ciphertext: bytes(&[0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5]),
                    },
                },
            })),
        ),
        (
            "server-deliver-room-change",
            Example::Server(ServerFrame::Deliver(Deliver {
                seq: Seq(301),
                envelope: Envelope {
                    message_id: MessageId::from_bytes([0x55; 16]),
                    from: addr(0xcc, 1),
                    sent_at: Timestamp(T0 + 789),
                    body: EnvelopeBody::RoomChange(SignedRoomChange {
                        change: RoomChange {
                            room: room(0x77),
                            epoch: 5,
                            actor: addr(0xcc, 1),
                            at: Timestamp(T0 + 700),
                            action: RoomAction::Invite { user: user(0xaa) },
                        },
                        signature: FixedBytes([0x99; 64]),
                    }),
                },
            })),
        ),
        (
            "client-ack",
            Example::Client(ClientFrame::Ack(Ack { up_to: Seq(301) })),
        ),
        (
            "client-send-ephemeral",
            Example::Client(ClientFrame::SendEphemeral(SendEphemeral {
                to: EphemeralTarget::Room {
                    room: room(0x77),
                    payload: bytes(&[0xe0, 0xe1, 0xe2, 0xe3]),
                },
            })),
        ),
        (
            "client-change-room-kick",
            Example::Client(ClientFrame::ChangeRoom(ChangeRoom {
                req: RequestId(3),
                change: SignedRoomChange {
                    change: kick_change(),
                    signature: FixedBytes([0x9a; 64]),
                },
            })),
        ),
        (
            "room-change-signed-bytes",
            Example::Raw(room_change_payload),
        ),
        (
            "server-prekey-bundles",
            Example::Server(ServerFrame::PreKeyBundles(PreKeyBundles {
                req: RequestId(4),
                user: user(0xbb),
                bundles: BoundedVec::new(vec![bundle]).unwrap(),
            })),
        ),
        (
            "client-blob-chunk-stream",
            Example::ClientStream(ClientFrame::BlobChunk(BlobChunk {
                blob: BlobId::from_bytes([0xb1; 32]),
                offset: 65_536,
                data: bytes(&[0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02, 0x03]),
            })),
        ),
        (
            "client-ping",
            Example::Client(ClientFrame::Ping(Ping { nonce: 1_000_000 })),
        ),
        (
            "server-drain",
            Example::Server(ServerFrame::Drain(Drain {
                reconnect_after_ms: 5_000,
                alternative: Some(text("relay2.example:4433")),
            })),
        ),
    ]
}

// ---------------------------------------------------------------- the document

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md")
}

fn read_doc() -> String {
    let p = doc_path();
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// Bytes as lower-case hex, 16 a line, space-separated, each line ending in
/// a newline.
fn hex_lines(b: &[u8]) -> String {
    let mut out = String::new();
    for line in b.chunks(16) {
        let words: Vec<String> = line.iter().map(|x| format!("{x:02x}")).collect();
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
}

/// Parses hex as written in an example block (whitespace-separated bytes).
fn parse_hex(s: &str) -> Option<Vec<u8>> {
    s.split_whitespace()
        .map(|w| {
            if w.len() == 2 {
                u8::from_str_radix(w, 16).ok()
            } else {
                None
            }
        })
        .collect()
}

const FENCE_OPEN: &str = "```text\n";
const FENCE_CLOSE: &str = "```\n";
const EXAMPLE_END: &str = "<!-- /example -->";

/// The byte range of the text inside the fenced block of example `name`.
fn example_block(doc: &str, name: &str) -> Result<std::ops::Range<usize>, String> {
    let marker = format!("<!-- example: {name} -->");
    let mut found = doc.match_indices(&marker);
    let Some((at, _)) = found.next() else {
        return Err(format!(
            "docs/protocol.md has no `{marker}` block; add\n{marker}\n{FENCE_OPEN}{FENCE_CLOSE}{EXAMPLE_END}\nwhere it belongs and bless"
        ));
    };
    if found.next().is_some() {
        return Err(format!("`{marker}` appears twice in docs/protocol.md"));
    }
    let after = &doc[at + marker.len()..];
    let rest = after.trim_start_matches([' ', '\n']);
    if !rest.starts_with(FENCE_OPEN) {
        return Err(format!("`{marker}` is not followed by a ```text fence"));
    }
    let start = doc.len() - rest.len() + FENCE_OPEN.len();
    let close = doc[start..]
        .find("```")
        .ok_or_else(|| format!("the fence after `{marker}` is never closed"))?;
    let end = start + close;
    let tail = doc[end..].strip_prefix(FENCE_CLOSE).unwrap_or("");
    if !tail
        .trim_start_matches([' ', '\n'])
        .starts_with(EXAMPLE_END)
    {
        return Err(format!(
            "the fence after `{marker}` is not followed by `{EXAMPLE_END}`"
        ));
    }
    Ok(start..end)
}

/// A line diff good enough for hex blocks (same line count, mostly).
fn diff(doc: &str, code: &str) -> String {
    let a: Vec<&str> = doc.lines().collect();
    let b: Vec<&str> = code.lines().collect();
    let mut out = String::new();
    for i in 0..a.len().max(b.len()) {
        match (a.get(i), b.get(i)) {
            (Some(x), Some(y)) if x == y => writeln!(out, "  {x}").unwrap(),
            (x, y) => {
                if let Some(x) = x {
                    writeln!(out, "- {x}   (doc, line {})", i + 1).unwrap();
                }
                if let Some(y) = y {
                    writeln!(out, "+ {y}   (code)").unwrap();
                }
            }
        }
    }
    out
}

fn write_doc(doc: &str) {
    // Write then rename, so that tests reading the document in parallel
    // never see half of it.
    let p = doc_path();
    let tmp = p.with_extension("md.bless");
    std::fs::write(&tmp, doc).unwrap();
    std::fs::rename(&tmp, &p).unwrap();
}

// ---------------------------------------------------------------- tables

/// The cells of each table row between `<!-- start -->` and `<!-- /end -->`
/// whose first cell is a number (header and separator rows are skipped).
fn table_rows(doc: &str, start: &str, end: &str) -> Vec<Vec<String>> {
    let s = doc
        .find(start)
        .unwrap_or_else(|| panic!("docs/protocol.md has no `{start}` marker"));
    let e = doc[s..]
        .find(end)
        .unwrap_or_else(|| panic!("`{start}` in docs/protocol.md is not closed by `{end}`"));
    doc[s + start.len()..s + e]
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').replace("\\_", "_"))
                .collect::<Vec<_>>()
        })
        .filter(|cells| cells.first().is_some_and(|c| c.parse::<u64>().is_ok()))
        .collect()
}

fn check_kind_table(doc: &str, which: &str, expected: &[(u8, &str, usize)]) -> Option<String> {
    let rows = table_rows(
        doc,
        &format!("<!-- limits: {which} -->"),
        "<!-- /limits -->",
    );
    let got: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r.first().cloned().unwrap_or_default(),
                r.get(1).cloned().unwrap_or_default(),
                r.get(2)
                    .cloned()
                    .unwrap_or_default()
                    .replace([',', ' '], ""),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = expected
        .iter()
        .map(|(t, n, m)| (t.to_string(), n.to_string(), m.to_string()))
        .collect();
    if got == want {
        return None;
    }
    let mut msg = format!(
        "the {which} frame table in docs/protocol.md (tag | name | max body) does not match the code:\n"
    );
    for i in 0..got.len().max(want.len()) {
        match (got.get(i), want.get(i)) {
            (Some(g), Some(w)) if g == w => {}
            (g, w) => {
                if let Some((t, n, m)) = g {
                    writeln!(msg, "- | {t} | `{n}` | {m} |   (doc)").unwrap();
                }
                if let Some((t, n, m)) = w {
                    writeln!(msg, "+ | {t} | `{n}` | {m} |   (code)").unwrap();
                }
            }
        }
    }
    Some(msg)
}

// ---------------------------------------------------------------- tests

#[test]
fn doc_examples_match_the_encoder() {
    let bless = std::env::var_os("SPIDER_BLESS").is_some_and(|v| v == "1");
    let mut doc = read_doc();
    let mut failures = Vec::new();
    let mut blessed = false;
    for (name, ex) in examples() {
        let want = hex_lines(&ex.encode());
        let range = match example_block(&doc, name) {
            Ok(r) => r,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let have = &doc[range.clone()];
        if have == want {
            continue;
        }
        if bless {
            doc.replace_range(range, &want);
            blessed = true;
        } else {
            failures.push(format!(
                "example `{name}` in docs/protocol.md differs from the encoder \
                 (run with SPIDER_BLESS=1 to rewrite it):\n{}",
                diff(have, &want)
            ));
        }
    }
    // Every example block in the document must be one the test knows.
    let known: Vec<&str> = examples().iter().map(|(n, _)| *n).collect();
    for (at, m) in doc.match_indices("<!-- example: ") {
        let rest = &doc[at + m.len()..];
        let name = rest.split(" -->").next().unwrap_or("");
        if !known.contains(&name) {
            failures.push(format!(
                "docs/protocol.md has an example `{name}` that tests/spec.rs does not build"
            ));
        }
    }
    if blessed {
        write_doc(&doc);
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn doc_examples_decode_back_to_their_frames() {
    let doc = read_doc();
    // While blessing, the document is being rewritten by another test: check
    // the encoder's own bytes instead.
    let bless = std::env::var_os("SPIDER_BLESS").is_some_and(|v| v == "1");
    for (name, ex) in examples() {
        let wire = if bless {
            ex.encode()
        } else {
            let Ok(range) = example_block(&doc, name) else {
                // Reported by doc_examples_match_the_encoder.
                continue;
            };
            parse_hex(&doc[range])
                .unwrap_or_else(|| panic!("example `{name}` is not whitespace-separated hex bytes"))
        };
        match ex {
            Example::Client(f) => {
                assert_eq!(
                    codec::decode_body::<ClientFrame>(&wire).unwrap(),
                    f,
                    "{name}"
                );
                assert_eq!(wire[0], f.kind().tag(), "{name}: first byte is the tag");
            }
            Example::Server(f) => {
                assert_eq!(
                    codec::decode_body::<ServerFrame>(&wire).unwrap(),
                    f,
                    "{name}"
                );
                assert_eq!(wire[0], f.kind().tag(), "{name}: first byte is the tag");
            }
            Example::ClientStream(f) => {
                let (got, used) = codec::decode_stream::<ClientFrame>(&wire)
                    .unwrap()
                    .unwrap_or_else(|| panic!("{name}: not a whole frame"));
                assert_eq!((got, used), (f.clone(), wire.len()), "{name}");
                let len = u32::from_be_bytes(wire[..LEN_PREFIX].try_into().unwrap());
                assert_eq!(len as usize, wire.len() - LEN_PREFIX, "{name}: prefix");
                assert_eq!(wire[LEN_PREFIX], f.kind().tag(), "{name}: tag");
            }
            Example::Raw(b) => assert_eq!(wire, b, "{name}"),
        }
    }
}

#[test]
fn room_change_signed_bytes_example_is_label_zero_and_postcard_of_the_change() {
    // The signed bytes are the label, a zero byte, and exactly the RoomChange
    // that travels inside ChangeRoom: a verifier can slice them out of the
    // frame instead of re-encoding.
    let frame = codec::encode_body(&ClientFrame::ChangeRoom(ChangeRoom {
        req: RequestId(3),
        change: SignedRoomChange {
            change: kick_change(),
            signature: FixedBytes([0x9a; 64]),
        },
    }))
    .unwrap();
    let change = kick_change().signed_bytes();
    // tag (1) and req 3 (1 byte), then the change, then the signature.
    assert_eq!(&frame[2..2 + change.len()], change.as_slice());
    assert_eq!(frame.len(), 2 + change.len() + 64);
    assert_eq!(
        postcard::from_bytes::<RoomChange>(&change).unwrap(),
        kick_change()
    );
}

#[test]
fn doc_frame_size_tables_match_the_kinds() {
    let doc = read_doc();
    let client: Vec<(u8, &str, usize)> = ClientKind::ALL
        .iter()
        .map(|k| (k.tag(), k.name(), k.max_len()))
        .collect();
    let server: Vec<(u8, &str, usize)> = ServerKind::ALL
        .iter()
        .map(|k| (k.tag(), k.name(), k.max_len()))
        .collect();
    let failures: Vec<String> = [
        check_kind_table(&doc, "client", &client),
        check_kind_table(&doc, "server", &server),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn doc_error_table_lists_every_code_with_its_name_and_fatality() {
    let doc = read_doc();
    let rows = table_rows(&doc, "<!-- errors -->", "<!-- /errors -->");
    let got: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r.first().cloned().unwrap_or_default(),
                r.get(1).cloned().unwrap_or_default(),
                r.get(2).cloned().unwrap_or_default().to_lowercase(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = ErrorCode::ALL
        .iter()
        .map(|c| {
            (
                c.0.to_string(),
                c.name().unwrap_or("?").to_string(),
                if c.is_fatal() { "fatal" } else { "no" }.to_string(),
            )
        })
        .collect();
    if got != want {
        let mut msg = String::from(
            "the error table in docs/protocol.md (code | name | fatal/no | ...) does not match ErrorCode::ALL.\n",
        );
        for w in &want {
            if !got.contains(w) {
                writeln!(msg, "missing or wrong in the doc: {w:?}").unwrap();
            }
        }
        for g in &got {
            if !want.contains(g) {
                writeln!(msg, "in the doc but not in the code: {g:?}").unwrap();
            }
        }
        writeln!(msg, "(rows must also be in numeric order, one per code)").unwrap();
        panic!("{msg}");
    }
}

#[test]
fn doc_has_a_section_for_every_frame_kind() {
    let doc = read_doc();
    let lines: Vec<&str> = doc.lines().collect();
    let headings: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("### ClientFrame::") || l.starts_with("### ServerFrame::"))
        .collect();
    let mut want = Vec::new();
    for k in ClientKind::ALL {
        want.push((
            format!("### ClientFrame::{} (tag {})", k.name(), k.tag()),
            k.max_len(),
        ));
    }
    for k in ServerKind::ALL {
        want.push((
            format!("### ServerFrame::{} (tag {})", k.name(), k.tag()),
            k.max_len(),
        ));
    }
    let missing: Vec<&String> = want
        .iter()
        .map(|(w, _)| w)
        .filter(|w| !headings.contains(&w.as_str()))
        .collect();
    let extra: Vec<&&str> = headings
        .iter()
        .filter(|h| !want.iter().any(|(w, _)| w == *h))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "frame headings in docs/protocol.md: missing {missing:#?}, unknown {extra:#?}"
    );
    // Each section states its kind's maximum before the next heading.
    let mut wrong = Vec::new();
    for (heading, max) in &want {
        let Some(at) = lines.iter().position(|l| l == heading) else {
            continue;
        };
        let section = lines[at + 1..]
            .iter()
            .take_while(|l| !l.starts_with("#"))
            .copied()
            .collect::<Vec<_>>()
            .join("\n");
        let stated = format!("**Max body:** {max} bytes.");
        if !section.contains(&stated) {
            wrong.push(format!("{heading}: expected `{stated}`"));
        }
    }
    assert!(
        wrong.is_empty(),
        "frame sections in docs/protocol.md state the wrong maximum:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn doc_constants_table_matches_the_code() {
    let doc = read_doc();
    let s = doc
        .find("<!-- constants -->")
        .expect("no `<!-- constants -->` marker");
    let e = doc[s..]
        .find("<!-- /constants -->")
        .expect("no `<!-- /constants -->` marker");
    let table = &doc[s..s + e];
    let want: Vec<(&str, String)> = vec![
        ("PROTOCOL_VERSION", version::PROTOCOL_VERSION.to_string()),
        ("ALPN", String::from_utf8(version::ALPN.to_vec()).unwrap()),
        ("WEBSOCKET_PATH", version::WEBSOCKET_PATH.to_string()),
        (
            "AUTH_EXPORTER_LABEL",
            String::from_utf8(version::AUTH_EXPORTER_LABEL.to_vec()).unwrap(),
        ),
        ("AUTH_EXPORTER_LEN", version::AUTH_EXPORTER_LEN.to_string()),
        ("LEN_PREFIX", LEN_PREFIX.to_string()),
        ("MAX_FRAME_LEN", MAX_FRAME_LEN.to_string()),
        (
            "MAX_DEVICES_PER_USER",
            message::MAX_DEVICES_PER_USER.to_string(),
        ),
        (
            "MAX_CIPHERTEXT_LEN",
            message::MAX_CIPHERTEXT_LEN.to_string(),
        ),
        ("MAX_EPHEMERAL_LEN", message::MAX_EPHEMERAL_LEN.to_string()),
        ("MAX_PROFILE_LEN", message::MAX_PROFILE_LEN.to_string()),
        ("MAX_ROOM_MEMBERS", message::MAX_ROOM_MEMBERS.to_string()),
        ("MAX_ROOMS_LISTED", message::MAX_ROOMS_LISTED.to_string()),
        ("MAX_CONTACTS", message::MAX_CONTACTS.to_string()),
        ("MAX_BLOB_CHUNK", message::MAX_BLOB_CHUNK.to_string()),
        (
            "MAX_OFFERED_VERSIONS",
            message::MAX_OFFERED_VERSIONS.to_string(),
        ),
        ("MAX_TEXT", message::MAX_TEXT.to_string()),
        ("MIN_NAME_LEN", MIN_NAME_LEN.to_string()),
        ("MAX_NAME_LEN", MAX_NAME_LEN.to_string()),
        ("KEM_PUBLIC_LEN", KEM_PUBLIC_LEN.to_string()),
        ("KEM_CIPHERTEXT_LEN", KEM_CIPHERTEXT_LEN.to_string()),
        (
            "MAX_ONE_TIME_PREKEYS_PER_UPLOAD",
            MAX_ONE_TIME_PREKEYS_PER_UPLOAD.to_string(),
        ),
        (
            "MAX_ONE_TIME_KEM_PREKEYS_PER_UPLOAD",
            MAX_ONE_TIME_KEM_PREKEYS_PER_UPLOAD.to_string(),
        ),
    ];
    let mut failures = Vec::new();
    for (name, value) in want {
        let row = format!("| `{name}` | `{value}` |");
        if !table.contains(&row) {
            failures.push(row);
        }
    }
    assert!(
        failures.is_empty(),
        "the constants table in docs/protocol.md lacks these rows (exactly):\n{}",
        failures.join("\n")
    );
}

#[test]
fn hex_formatting_is_sixteen_bytes_a_line() {
    let b: Vec<u8> = (0..=20).collect();
    assert_eq!(
        hex_lines(&b),
        "00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f\n10 11 12 13 14\n"
    );
    assert_eq!(parse_hex(&hex_lines(&b)), Some(b));
    assert_eq!(parse_hex("0g"), None);
}

#[test]
fn doc_room_devices_digest_examples_match_the_code() {
    use spider_protocol::ids::{DeviceAddress, DeviceId, UserId};
    use spider_protocol::message::room_devices_digest;
    let doc = read_doc();
    let dev = |u: u8, d: u32| DeviceAddress {
        user: UserId::from_bytes([u; 16]),
        device: DeviceId(d),
    };
    // Out of order and with a repeat, as a client might list them.
    let three = room_devices_digest([dev(0xbb, 1), dev(0xaa, 2), dev(0xaa, 1), dev(0xaa, 2)]);
    let none = room_devices_digest([]);
    for (what, d) in [("three devices", three), ("no device", none)] {
        let hex = hex::encode(d.0);
        assert!(
            doc.contains(&format!("`{hex}`")),
            "docs/protocol.md's room devices digest example for {what} should be `{hex}`"
        );
    }
}
