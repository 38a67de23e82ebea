//! How components ask for things: they push an [`InternalEvent`] and the app
//! handles it after the component returns (gitui's `src/queue.rs`). No
//! component holds another, and none touches the state or the worker.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use spider_protocol::ids::{RoomId, UserId};
use spider_protocol::name::Username;

use crate::components::command::Command;
use crate::worker::ConversationId;

/// Which pane has the keyboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pane {
    /// Contacts, rooms, invitations.
    Sidebar,
    /// The scrollback.
    Chat,
    /// Where messages are written.
    Composer,
}

impl Pane {
    /// The next pane for Tab (`forward`) or Shift-Tab.
    pub(crate) fn cycle(self, forward: bool) -> Pane {
        match (self, forward) {
            (Pane::Sidebar, true) | (Pane::Composer, false) => Pane::Chat,
            (Pane::Chat, true) | (Pane::Sidebar, false) => Pane::Composer,
            (Pane::Composer, true) | (Pane::Chat, false) => Pane::Sidebar,
        }
    }
}

/// A request from a component to the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum InternalEvent {
    /// Open a conversation.
    Open(ConversationId),
    /// Accept a pending invitation.
    AcceptInvitation(RoomId),
    /// Decline a pending invitation.
    DeclineInvitation(RoomId),
    /// Send text to the open conversation.
    SendText(String),
    /// Run a parsed slash command.
    Run(Command),
    /// Show a notice (`error` in red).
    Notify(String, bool),
    /// The user is typing in the open conversation.
    Typing,
    /// Close whatever overlay is up.
    CloseOverlay,
    /// Mark a contact's safety number verified.
    Verify(UserId),
    /// First run: create an account, or sign in on a new device.
    SignIn {
        /// Register (`true`) or sign in.
        register: bool,
        /// Relay address.
        relay: String,
        /// Username.
        name: Username,
    },
    /// Leave spider.
    Quit,
}

/// The shared queue. Single-threaded: the UI runs on one thread.
#[derive(Clone, Debug, Default)]
pub(crate) struct Queue {
    data: Rc<RefCell<VecDeque<InternalEvent>>>,
}

impl Queue {
    /// Appends a request.
    pub(crate) fn push(&self, ev: InternalEvent) {
        self.data.borrow_mut().push_back(ev);
    }

    /// Takes the oldest request.
    pub(crate) fn pop(&self) -> Option<InternalEvent> {
        self.data.borrow_mut().pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tab_visits_every_pane_and_shift_tab_undoes_it() {
        let mut p = Pane::Composer;
        let mut seen = vec![];
        for _ in 0..3 {
            p = p.cycle(true);
            seen.push(p);
        }
        assert_eq!(seen, [Pane::Sidebar, Pane::Chat, Pane::Composer]);
        for p in [Pane::Sidebar, Pane::Chat, Pane::Composer] {
            assert_eq!(p.cycle(true).cycle(false), p);
        }
    }

    #[test]
    fn queue_is_first_in_first_out_and_shared_by_clones() {
        let q = Queue::default();
        let q2 = q.clone();
        q.push(InternalEvent::CloseOverlay);
        q2.push(InternalEvent::Quit);
        assert_eq!(q.pop(), Some(InternalEvent::CloseOverlay));
        assert_eq!(q.pop(), Some(InternalEvent::Quit));
        assert_eq!(q.pop(), None);
    }
}
