//! Render snapshots of the main screens on ratatui's `TestBackend`, the app's
//! key handling end to end, and a property test that no terminal size makes
//! drawing panic. Times come from a fixed clock in UTC; a filter still masks
//! clock times and hex ids so that a change of demo data does not churn
//! every snapshot.

use proptest::prelude::*;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{
    Event, KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind,
};
use spider_protocol::ids::{MessageId, Timestamp};
use time::UtcOffset;
use tokio::sync::mpsc;

use crate::app::{App, AppMsg};
use crate::queue::Pane;
use crate::state::tests::T0;
use crate::state::{AppState, Outcome, Overlay};
use crate::worker::fake::FakeWorker;
use crate::worker::{
    Attachment, ChatMessage, ConnectionState, ConversationId, Delivery, MessageBody, Request,
    Transport, Worker, WorkerEvent,
};

struct Harness {
    app: App,
    fake: FakeWorker,
    requests: mpsc::UnboundedReceiver<Request>,
    replies: mpsc::UnboundedReceiver<AppMsg>,
}

/// An app signed in as @sam on the fake's demo data, at T0 in UTC, with
/// @alice open.
fn signed_in() -> Harness {
    signed_in_with(None)
}

fn signed_in_with(graphics: Option<crate::preview::Graphics>) -> Harness {
    let mut fake = FakeWorker::signed_in("sam", Timestamp(T0));
    let mut state = AppState::new(Timestamp(T0), UtcOffset::UTC);
    state.graphics = graphics;
    for ev in fake.start(Timestamp(T0)) {
        state.apply(ev);
    }
    harness(state, fake)
}

fn harness(state: AppState, fake: FakeWorker) -> Harness {
    let (worker, requests) = Worker::channel();
    let (tx, replies) = mpsc::unbounded_channel();
    let app = App::new(state, worker, tx, "relay.example:443");
    Harness {
        app,
        fake,
        requests,
        replies,
    }
}

fn first_run() -> Harness {
    let mut state = AppState::new(Timestamp(T0), UtcOffset::UTC);
    state.apply(WorkerEvent::Ready { account: None });
    harness(state, FakeWorker::new(crate::worker::TransportChoice::Auto))
}

impl Harness {
    fn key(&mut self, code: KeyCode) {
        self.key_mod(code, KeyModifiers::NONE);
    }

    fn key_mod(&mut self, code: KeyCode, m: KeyModifiers) {
        self.app
            .handle(AppMsg::Input(Event::Key(KeyEvent::new(code, m))));
    }

    fn type_str(&mut self, s: &str) {
        for c in s.chars() {
            self.key(KeyCode::Char(c));
        }
    }

    fn resize(&mut self, w: u16, h: u16) {
        self.app.handle(AppMsg::Input(Event::Resize(w, h)));
    }

    /// Lets the fake answer every pending request, then feeds the answers
    /// and the events due by `now` to the app.
    async fn pump(&mut self, now: u64) {
        let mut answered = 0;
        while let Ok(req) = self.requests.try_recv() {
            let fire_and_forget = matches!(req, Request::MarkRead { .. } | Request::Typing { .. });
            self.fake.handle(req, Timestamp(now));
            answered += usize::from(!fire_and_forget);
        }
        // Each answer arrives through a spawned task.
        tokio::task::yield_now().await;
        if answered > 0 {
            while let Ok(Some(msg)) =
                tokio::time::timeout(std::time::Duration::from_millis(50), self.replies.recv())
                    .await
            {
                self.app.handle(msg);
            }
        }
        for ev in self.fake.advance(Timestamp(now)) {
            self.app.handle(AppMsg::Worker(ev));
        }
        self.app.flush();
        self.app.handle(AppMsg::Tick(Timestamp(now)));
    }

    fn render(&mut self, w: u16, h: u16) -> String {
        self.resize(w, h);
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| self.app.draw(f)).unwrap();
        if w == 0 {
            // TestBackend cannot print a zero-width buffer; drawing it is the test.
            return String::new();
        }
        t.backend().to_string()
    }
}

macro_rules! snapshot {
    ($name:expr, $screen:expr) => {
        insta::with_settings!({
            filters => vec![
                (r"\b[0-2]\d:[0-5]\d\b", "HH:MM"),
                (r"\b[0-9a-f]{32}\b", "[id]"),
            ],
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!($name, $screen);
        });
    };
}

fn alice(h: &Harness) -> ConversationId {
    h.app.state.focused.unwrap()
}

fn bob(h: &Harness) -> ConversationId {
    ConversationId::Direct(h.app.state.contacts[1].id)
}

#[test]
fn first_run_screen() {
    let mut h = first_run();
    h.type_str("dave");
    snapshot!("first_run", h.render(80, 24));
}

#[test]
fn first_run_rejects_a_bad_name_in_place() {
    let mut h = first_run();
    h.type_str("xy!z");
    h.key(KeyCode::Enter);
    let s = h.render(80, 24);
    assert!(s.contains("username: only letters"), "{s}");
}

#[test]
fn main_screen_with_sidebar_chat_and_composer() {
    let mut h = signed_in();
    let a = alice(&h);
    h.app.handle(AppMsg::Worker(WorkerEvent::Typing {
        conversation: a,
        user: h.app.state.contacts[0].name.clone(),
    }));
    h.type_str("see you at 7");
    snapshot!("main", h.render(100, 30));
}

#[test]
fn main_screen_shows_unread_counts_and_the_invitation() {
    let mut h = signed_in();
    let s = h.render(100, 30);
    // bob's two messages arrived while @alice was open.
    assert!(s.contains("@bob"), "{s}");
    let bob_line = s.lines().find(|l| l.contains("@bob")).unwrap();
    assert!(bob_line.contains(" 2"), "{bob_line}");
    assert!(s.contains("#design ← @carol"), "{s}");
}

#[test]
fn terminal_graphics_path_draws_whole_images_and_falls_back_when_cut() {
    // ratatui-image's half-block protocol stands in for sixel / kitty, which
    // TestBackend cannot show; the placement logic is the same.
    let mut h = signed_in_with(Some(crate::preview::Graphics::halfblocks()));
    assert_eq!(h.app.state.graphic.len(), 1);
    snapshot!("main_graphics", h.render(100, 30));
    // Scrolled so that the image is cut at the top: half blocks, no panic.
    h.key(KeyCode::Esc);
    for _ in 0..3 {
        h.key(KeyCode::Char('k'));
    }
    let s = h.render(100, 14);
    assert!(s.contains('▀'), "{s}");
}

#[test]
fn offline_contacts_show_when_they_were_last_seen() {
    let mut h = signed_in();
    let carol = ConversationId::Direct(h.app.state.contacts[2].id);
    h.app.state.focus(carol);
    let s = h.render(100, 20);
    // The fake's carol left an hour before T0 (midnight): the day before.
    assert!(s.contains("@carol Carol last seen Wed 31 Dec 2025"), "{s}");
    h.app.handle(AppMsg::Tick(Timestamp(T0 - 60_000)));
    let s = h.render(100, 20);
    assert!(s.contains("last seen 23:00"), "{s}");
}

#[test]
fn help_overlay() {
    let mut h = signed_in();
    h.key(KeyCode::Esc); // composer -> chat
    h.key(KeyCode::Char('?'));
    assert_eq!(h.app.state.overlay, Some(Overlay::Help));
    snapshot!("help", h.render(80, 30));
    h.key(KeyCode::Esc);
    assert_eq!(h.app.state.overlay, None);
}

#[test]
fn question_mark_in_the_composer_is_just_text() {
    let mut h = signed_in();
    h.type_str("why?");
    assert_eq!(h.app.state.overlay, None);
    assert_eq!(h.app.composer_mut().text(), "why?");
}

#[tokio::test]
async fn safety_screen_with_identity_change_warning() {
    let mut h = signed_in();
    let b = bob(&h);
    let ConversationId::Direct(bob_id) = b else {
        unreachable!()
    };
    h.app.handle(AppMsg::Worker(WorkerEvent::IdentityChanged {
        user: bob_id,
    }));
    h.app.state.focus(b);
    snapshot!("chat_identity_banner", h.render(100, 24));
    h.type_str("/safety");
    h.key(KeyCode::Enter);
    h.pump(T0).await;
    let Some(Overlay::Safety(info)) = &mut h.app.state.overlay else {
        panic!("no safety screen: {:?}", h.app.state.notice)
    };
    // The fake's bob never changed keys; the app's did. Show the warning.
    info.identity_changed = true;
    info.verified = false;
    snapshot!("safety_identity_changed", h.render(100, 24));
    // v verifies; the warning goes.
    h.key(KeyCode::Char('v'));
    h.pump(T0).await;
    let Some(Overlay::Safety(info)) = &h.app.state.overlay else {
        panic!()
    };
    assert!(info.verified && !info.identity_changed);
    assert!(!h.app.state.contacts[1].identity_changed);
    let s = h.render(100, 24);
    assert!(s.contains("✔ Verified"), "{s}");
}

#[test]
fn very_small_terminals() {
    let mut h = signed_in();
    snapshot!("tiny_20x5", h.render(20, 5));
    snapshot!("tiny_10x3", h.render(10, 3));
    let one = h.render(1, 1);
    assert_eq!(one.lines().count(), 1);
}

#[test]
fn narrow_terminal_hides_the_sidebar_until_tab_reaches_it() {
    let mut h = signed_in();
    let s = h.render(50, 16);
    assert!(!s.contains("Contacts"), "{s}");
    h.key(KeyCode::Tab);
    assert_eq!(h.app.focus(), Pane::Sidebar);
    let s = h.render(50, 16);
    snapshot!("narrow_sidebar", s);
    // Opening a conversation from it brings the chat back.
    h.key(KeyCode::Char('j'));
    h.key(KeyCode::Enter);
    assert_eq!(h.app.focus(), Pane::Composer);
    assert_eq!(h.app.state.focused, Some(bob(&h)));
}

#[test]
fn file_transfer_progress() {
    let mut h = signed_in();
    let a = alice(&h);
    let id = MessageId::from_bytes([0x42; 16]);
    h.app.handle(AppMsg::Outcome(Outcome::Sent(
        a,
        Ok(ChatMessage {
            id,
            from: h.app.state.account.clone().unwrap().name,
            mine: true,
            at: Timestamp(T0),
            body: MessageBody::File(Attachment {
                name: "slides.pdf".into(),
                size: 3_145_728,
                transferred: Some(0),
                image: None,
            }),
            delivery: Delivery::Pending,
        }),
    )));
    h.app.handle(AppMsg::Worker(WorkerEvent::FileProgress {
        conversation: a,
        message: id,
        done: 1_258_291,
        total: 3_145_728,
    }));
    snapshot!("file_progress", h.render(100, 24));
}

#[test]
fn reconnect_state_shows_in_the_status_line() {
    let mut h = signed_in();
    h.app.handle(AppMsg::Worker(WorkerEvent::Connection(
        ConnectionState::Reconnecting {
            attempt: 2,
            retry_in_ms: 4_000,
        },
    )));
    let s = h.render(100, 24);
    let last = s.lines().last().unwrap();
    assert!(last.contains("↻ reconnecting: attempt 2 in 4s"), "{last}");
    snapshot!("reconnecting_80x24", h.render(80, 24));
    h.app.handle(AppMsg::Worker(WorkerEvent::Connection(
        ConnectionState::Connected {
            transport: Transport::WebSocket,
        },
    )));
    let s = h.render(100, 24);
    assert!(s.lines().last().unwrap().contains("● WebSocket"));
}

#[test]
fn command_palette_lists_matching_commands() {
    let mut h = signed_in();
    h.type_str("/s");
    snapshot!("palette", h.render(100, 24));
}

#[test]
fn tab_and_shift_tab_move_between_panes() {
    let mut h = signed_in();
    assert_eq!(h.app.focus(), Pane::Composer);
    h.key(KeyCode::Tab);
    assert_eq!(h.app.focus(), Pane::Sidebar);
    h.key(KeyCode::Tab);
    assert_eq!(h.app.focus(), Pane::Chat);
    h.key_mod(KeyCode::BackTab, KeyModifiers::SHIFT);
    assert_eq!(h.app.focus(), Pane::Sidebar);
}

#[test]
fn sidebar_keys_open_a_conversation_and_clear_its_unread() {
    let mut h = signed_in();
    h.render(100, 30);
    let b = bob(&h);
    assert_eq!(h.app.state.unread(b), 2);
    h.key(KeyCode::Tab);
    h.key(KeyCode::Char('j'));
    h.key(KeyCode::Enter);
    assert_eq!(h.app.state.focused, Some(b));
    assert_eq!(h.app.state.unread(b), 0);
    // The read receipt went to the worker.
    let req = h.requests.try_recv().unwrap();
    assert!(matches!(req, Request::MarkRead { conversation, .. } if conversation == b));
}

#[test]
fn chat_scrolls_with_keys_and_the_mouse_wheel() {
    let mut h = signed_in();
    h.render(100, 12);
    h.key(KeyCode::Esc); // to the chat
    assert_eq!(h.app.focus(), Pane::Chat);
    h.key(KeyCode::Char('k'));
    assert_eq!(h.app.chat_scroll(), 1);
    h.key(KeyCode::Char('G'));
    assert_eq!(h.app.chat_scroll(), 0);
    h.key(KeyCode::Char('g'));
    let top = h.app.chat_scroll();
    assert!(top > 1, "clamped to the content: {top}");
    h.key(KeyCode::Char('G'));
    h.app.handle(AppMsg::Input(Event::Mouse(MouseEvent {
        kind: MouseEventKind::ScrollUp,
        column: 60,
        row: 3,
        modifiers: KeyModifiers::NONE,
    })));
    assert_eq!(h.app.chat_scroll(), 3.min(top));
    h.key(KeyCode::PageDown);
    assert_eq!(h.app.chat_scroll(), 0);
}

#[test]
fn clicking_a_sidebar_row_opens_it() {
    let mut h = signed_in();
    h.render(100, 30);
    // Row 0 is "Contacts (3)", rows 1-3 the contacts: row 2 is @bob.
    h.app.handle(AppMsg::Input(Event::Mouse(MouseEvent {
        kind: MouseEventKind::Down(ratatui::crossterm::event::MouseButton::Left),
        column: 3,
        row: 2,
        modifiers: KeyModifiers::NONE,
    })));
    assert_eq!(h.app.state.focused, Some(bob(&h)));
    assert_eq!(h.app.focus(), Pane::Composer);
}

#[test]
fn reading_scrolled_up_stays_put_when_messages_arrive() {
    let mut h = signed_in();
    let before = h.render(100, 16);
    h.key(KeyCode::Esc);
    h.key(KeyCode::Char('k'));
    h.key(KeyCode::Char('k'));
    let scrolled = h.render(100, 16);
    assert_ne!(before, scrolled);
    let a = alice(&h);
    let from = h.app.state.contacts[0].name.clone();
    h.app.handle(AppMsg::Worker(WorkerEvent::MessageReceived {
        conversation: a,
        message: ChatMessage {
            id: MessageId::from_bytes([0x77; 16]),
            from,
            mine: false,
            at: Timestamp(T0),
            body: MessageBody::Text("new".into()),
            delivery: Delivery::Read,
        },
    }));
    let after = h.render(100, 16);
    // Same rows of the chat on screen (the status line may differ).
    let chat = |s: &str| s.lines().take(10).map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(chat(&scrolled), chat(&after));
}

#[tokio::test]
async fn sending_from_the_composer_shows_marks_advancing() {
    let mut h = signed_in();
    let a = alice(&h);
    h.type_str("slides are ready");
    h.key(KeyCode::Enter);
    h.pump(T0).await;
    let last = |h: &Harness| {
        h.app.state.conversations[&a]
            .messages
            .last()
            .cloned()
            .unwrap()
    };
    assert_eq!(last(&h).delivery, Delivery::Pending);
    h.pump(T0 + 250).await;
    assert_eq!(last(&h).delivery, Delivery::Sent);
    h.pump(T0 + 800).await;
    assert_eq!(last(&h).delivery, Delivery::Delivered);
    h.pump(T0 + 2_000).await;
    assert_eq!(last(&h).delivery, Delivery::Read);
    let s = h.render(100, 30);
    assert!(s.contains("✔✔ @sam: slides are ready"), "{s}");
}

#[tokio::test]
async fn slash_commands_reach_the_worker() {
    let mut h = signed_in();
    h.type_str("/room create #books");
    h.key(KeyCode::Enter);
    h.pump(T0).await;
    let f = h.app.state.focused.unwrap();
    assert_eq!(h.app.state.title(f), "#books");
    h.type_str("/link");
    h.key(KeyCode::Enter);
    h.pump(T0).await;
    assert!(
        matches!(&h.app.state.overlay, Some(Overlay::Info { title, .. }) if title == "Invite link")
    );
    h.key(KeyCode::Esc);
    h.type_str("/members");
    h.key(KeyCode::Enter);
    h.pump(T0).await;
    assert!(matches!(&h.app.state.overlay, Some(Overlay::Info { lines, .. }) if lines.len() == 1));
    h.key(KeyCode::Esc);
    h.type_str("/msg @nobody hi");
    h.key(KeyCode::Enter);
    h.pump(T0).await;
    let n = h.app.state.notice.clone().unwrap();
    assert!(n.error && n.text.contains("no such user"), "{n:?}");
    h.type_str("/search meetup");
    h.key(KeyCode::Enter);
    h.pump(T0).await;
    assert!(
        matches!(&h.app.state.overlay, Some(Overlay::Info { lines, .. }) if lines[0].contains("meetup"))
    );
}

#[tokio::test]
async fn first_run_registers_and_lands_on_the_main_screen() {
    let mut h = first_run();
    h.type_str("dave");
    h.key(KeyCode::Enter);
    assert!(h.app.state.signing_in);
    h.pump(T0).await;
    assert_eq!(h.app.state.screen, crate::state::Screen::Main);
    assert_eq!(h.app.state.contacts.len(), 3);
}

#[test]
fn a_burst_of_messages_in_the_open_chat_sends_one_read_receipt() {
    let mut h = signed_in();
    let a = alice(&h);
    let from = h.app.state.contacts[0].name.clone();
    for i in 0..5u8 {
        h.app.handle(AppMsg::Worker(WorkerEvent::MessageReceived {
            conversation: a,
            message: ChatMessage {
                id: MessageId::from_bytes([0x50 + i; 16]),
                from: from.clone(),
                mine: false,
                at: Timestamp(T0),
                body: MessageBody::Text("burst".into()),
                delivery: Delivery::Read,
            },
        }));
    }
    assert!(h.requests.try_recv().is_err());
    h.app.flush();
    let req = h.requests.try_recv().unwrap();
    assert!(
        matches!(req, Request::MarkRead { up_to, .. } if up_to == MessageId::from_bytes([0x54; 16]))
    );
    assert!(h.requests.try_recv().is_err());
}

#[test]
fn ctrl_c_quits() {
    let mut h = signed_in();
    h.key_mod(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert!(h.app.should_quit());
}

#[test]
fn fixed_sizes_never_panic() {
    for (w, h) in [
        (1, 1),
        (10, 3),
        (20, 5),
        (80, 24),
        (200, 60),
        (0, 0),
        (1, 40),
        (300, 1),
    ] {
        for setup in 0..6 {
            let mut hs = screen(setup);
            hs.render(w, h);
        }
    }
}

/// Screen variants for the size property: first run, main (each pane
/// focused), help, safety.
fn screen(which: u8) -> Harness {
    match which {
        0 => first_run(),
        1 => signed_in(),
        2 => {
            let mut h = signed_in();
            h.key(KeyCode::Tab);
            h
        }
        3 => {
            let mut h = signed_in();
            h.app.state.overlay = Some(Overlay::Help);
            h
        }
        4 => {
            let mut h = signed_in();
            h.app.state.overlay = Some(Overlay::Safety(crate::worker::SafetyInfo {
                id: h.app.state.contacts[1].id,
                user: h.app.state.contacts[1].name.clone(),
                digits: "0123456789".repeat(6),
                verified: false,
                identity_changed: true,
            }));
            h
        }
        _ => {
            let mut h = signed_in();
            h.type_str(
                "a very long message that wraps around many times "
                    .repeat(8)
                    .as_str(),
            );
            h
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn drawing_never_panics_at_any_size(w in 0u16..260, h in 0u16..90, which in 0u8..6) {
        let mut hs = screen(which);
        let out = hs.render(w, h);
        if w > 0 && h > 0 {
            prop_assert_eq!(out.lines().count(), usize::from(h));
        }
    }
}

/// Random worker events, for the robustness property: anything a (possibly
/// hostile) peer can put in a message or a receipt.
fn arb_event(
    convs: Vec<ConversationId>,
    users: Vec<spider_protocol::ids::UserId>,
) -> impl Strategy<Value = WorkerEvent> {
    let conv = proptest::sample::select(convs);
    let user = proptest::sample::select(users);
    let id = (0u8..12).prop_map(|i| MessageId::from_bytes([i; 16]));
    let delivery = proptest::sample::select(vec![
        Delivery::Pending,
        Delivery::Sent,
        Delivery::Delivered,
        Delivery::Read,
        Delivery::Failed,
    ]);
    let name = proptest::sample::select(vec!["alice", "bob", "carol", "sam", "zed"])
        .prop_map(|n| spider_protocol::name::Username::parse(n).unwrap());
    let text = || {
        proptest::string::string_regex("(\\PC|[\\x00-\\x1f\\x7f\u{200b}\u{fe0f}日本語]){0,300}")
            .unwrap()
    };
    let body = prop_oneof![
        text().prop_map(MessageBody::Text),
        text().prop_map(MessageBody::Notice),
        (
            text(),
            any::<u64>(),
            proptest::option::of(any::<u64>()),
            any::<bool>()
        )
            .prop_map(
                |(name, size, transferred, image)| MessageBody::File(Attachment {
                    name,
                    size,
                    transferred,
                    image: image.then(|| crate::preview::demo_png(7, 30)),
                })
            ),
    ];
    prop_oneof![
        (
            conv.clone(),
            id.clone(),
            name.clone(),
            any::<bool>(),
            any::<u64>(),
            body,
            delivery.clone()
        )
            .prop_map(|(conversation, id, from, mine, at, body, delivery)| {
                WorkerEvent::MessageReceived {
                    conversation,
                    message: ChatMessage {
                        id,
                        from,
                        mine,
                        at: Timestamp(at),
                        body,
                        delivery,
                    },
                }
            }),
        (conv.clone(), id.clone(), delivery).prop_map(|(conversation, message, delivery)| {
            WorkerEvent::DeliveryChanged {
                conversation,
                message,
                delivery,
            }
        }),
        (conv.clone(), name)
            .prop_map(|(conversation, user)| WorkerEvent::Typing { conversation, user }),
        user.clone()
            .prop_map(|user| WorkerEvent::IdentityChanged { user }),
        (conv, id, any::<u64>(), any::<u64>()).prop_map(|(conversation, message, done, total)| {
            WorkerEvent::FileProgress {
                conversation,
                message,
                done,
                total,
            }
        }),
        (any::<u32>(), any::<u64>()).prop_map(|(attempt, retry_in_ms)| WorkerEvent::Connection(
            ConnectionState::Reconnecting {
                attempt,
                retry_in_ms
            }
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the network says, the app neither panics nor shows unread
    /// messages in the conversation that is open, at any size.
    #[test]
    fn random_events_never_break_state_or_drawing(
        seed_events in {
            let h = signed_in();
            let convs: Vec<ConversationId> = h.app.state.conversations.keys().copied().collect();
            let users = h.app.state.contacts.iter().map(|c| c.id).collect();
            proptest::collection::vec(arb_event(convs, users), 1..40)
        },
        w in 1u16..160,
        hgt in 1u16..50,
        scroll_up in 0usize..30,
    ) {
        let mut h = signed_in();
        for ev in seed_events {
            h.app.handle(AppMsg::Worker(ev));
        }
        let open = h.app.state.focused.unwrap();
        prop_assert_eq!(h.app.state.unread(open), 0);
        h.render(w, hgt);
        h.key(KeyCode::Esc);
        for _ in 0..scroll_up {
            h.key(KeyCode::Char('k'));
        }
        h.render(w, hgt);
        h.key(KeyCode::Tab);
        h.render(w, hgt);
    }
}

#[test]
fn drawing_lays_out_only_the_tail_and_it_matches_the_full_layout() {
    let h = signed_in();
    let c = h.app.state.focused_conversation().unwrap();
    let full = crate::components::chat::rows(&h.app.state, c, 60);
    for need in [0, 1, 3, 7, 12, 100] {
        let tail = crate::components::chat::tail_rows(&h.app.state, c, 60, need);
        assert!(tail.len() >= need.min(full.len()));
        let text = |r: &[crate::components::chat::Row]| format!("{r:?}");
        assert_eq!(
            text(&full[full.len() - tail.len()..]),
            text(&tail),
            "need {need}"
        );
    }
}

#[test]
fn a_long_history_loads_and_draws() {
    let mut h = signed_in();
    let a = alice(&h);
    let from = h.app.state.contacts[0].name.clone();
    for i in 0..3_000u32 {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&i.to_be_bytes());
        id[15] = 0xee;
        h.app.handle(AppMsg::Worker(WorkerEvent::MessageReceived {
            conversation: a,
            message: ChatMessage {
                id: MessageId::from_bytes(id),
                from: from.clone(),
                mine: false,
                at: Timestamp(T0 + u64::from(i) * 1_000),
                body: MessageBody::Text(format!("message number {i}")),
                delivery: Delivery::Read,
            },
        }));
    }
    let s = h.render(100, 30);
    assert!(s.contains("message number 2999"), "{s}");
}

/// One input for the key-sequence property.
fn arb_input() -> impl Strategy<Value = Event> {
    let key = |c: KeyCode| Event::Key(KeyEvent::new(c, KeyModifiers::NONE));
    let keys = vec![
        key(KeyCode::Tab),
        Event::Key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT)),
        key(KeyCode::Char('j')),
        key(KeyCode::Char('k')),
        key(KeyCode::Char('g')),
        key(KeyCode::Char('G')),
        key(KeyCode::Char('x')),
        key(KeyCode::Char('v')),
        key(KeyCode::Char('?')),
        key(KeyCode::Char('/')),
        key(KeyCode::Char('a')),
        key(KeyCode::Char(' ')),
        key(KeyCode::Enter),
        Event::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::ALT)),
        key(KeyCode::Esc),
        key(KeyCode::F(1)),
        key(KeyCode::PageUp),
        key(KeyCode::PageDown),
        key(KeyCode::Up),
        key(KeyCode::Down),
        key(KeyCode::Left),
        key(KeyCode::Right),
        key(KeyCode::Backspace),
        Event::Paste("pasted\r\ntext 日本".into()),
    ];
    prop_oneof![
        4 => proptest::sample::select(keys),
        1 => (0u16..120, 0u16..40, 0u8..3).prop_map(|(column, row, k)| Event::Mouse(MouseEvent {
            kind: match k {
                0 => MouseEventKind::ScrollUp,
                1 => MouseEventKind::ScrollDown,
                _ => MouseEventKind::Down(ratatui::crossterm::event::MouseButton::Left),
            },
            column,
            row,
            modifiers: KeyModifiers::NONE,
        })),
        1 => (1u16..120, 1u16..40).prop_map(|(w, h)| Event::Resize(w, h)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any sequence of keys, clicks, pastes and resizes, with the fake
    /// answering, leaves an app that draws at its size without panicking.
    #[test]
    fn any_input_sequence_keeps_the_app_drawable(
        inputs in proptest::collection::vec(arb_input(), 0..60),
        which in 0u8..6,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _guard = rt.enter();
        let mut h = screen(which);
        let (mut w, mut ht) = (80, 24);
        for ev in inputs {
            if let Event::Resize(nw, nh) = ev {
                (w, ht) = (nw, nh);
            }
            h.app.handle(AppMsg::Input(ev));
            if h.app.should_quit() {
                break;
            }
            rt.block_on(h.pump(T0));
            h.render(w, ht);
        }
    }
}
