//! Slash commands: the parser into a typed [`Command`], and the palette that
//! lists matching commands above the composer while one is being typed.

use std::path::PathBuf;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use spider_protocol::ids::LinkToken;
use spider_protocol::name::{NameError, RoomName, Username};

use crate::worker::JoinTarget;

/// A parsed slash command. Arguments are already validated: names are
/// [`Username`] / [`RoomName`], links are tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// `/msg @user [text]`: open a 1:1 chat, optionally sending a first line.
    Msg {
        /// Whom.
        user: Username,
        /// What to send at once.
        text: Option<String>,
    },
    /// `/room create #name`.
    RoomCreate {
        /// The new room's name.
        name: RoomName,
    },
    /// `/invite @user [#room]` (the open room by default).
    Invite {
        /// Whom.
        user: Username,
        /// Where.
        room: Option<RoomName>,
    },
    /// `/link [#room]`: make an invite link.
    Link {
        /// Which room.
        room: Option<RoomName>,
    },
    /// `/join #room` (a pending invitation) or `/join LINK`.
    Join {
        /// Where.
        target: JoinTarget,
    },
    /// `/leave [#room]`.
    Leave {
        /// Which room.
        room: Option<RoomName>,
    },
    /// `/kick @user [#room]`.
    Kick {
        /// Whom.
        user: Username,
        /// From where.
        room: Option<RoomName>,
    },
    /// `/members [#room]`.
    Members {
        /// Which room.
        room: Option<RoomName>,
    },
    /// `/file PATH`: send a file to the open conversation.
    File {
        /// Local path.
        path: PathBuf,
    },
    /// `/safety [@user]`: show the safety number.
    Safety {
        /// Whose (the open 1:1 by default).
        user: Option<Username>,
    },
    /// `/verify [@user]`: mark the safety number verified.
    Verify {
        /// Whose (the open 1:1 by default).
        user: Option<Username>,
    },
    /// `/profile NAME…`: set the display name.
    Profile {
        /// The new display name.
        display_name: String,
    },
    /// `/search WORDS…`.
    Search {
        /// What to find.
        query: String,
    },
    /// `/help`.
    Help,
    /// `/quit`.
    Quit,
}

/// Why a line was not a valid command. Displayed as is in the status line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CommandError {
    /// The line does not start with `/`.
    #[error("not a command")]
    NotACommand,
    /// `/something` that we do not know.
    #[error("unknown command /{0}; /help lists them")]
    Unknown(String),
    /// An argument is missing.
    #[error("missing {what}; usage: {usage}")]
    Missing {
        /// What is missing.
        what: &'static str,
        /// The command's usage line.
        usage: &'static str,
    },
    /// More arguments than the command takes.
    #[error("too many arguments; usage: {usage}")]
    TooMany {
        /// The command's usage line.
        usage: &'static str,
    },
    /// A user or room name that breaks the naming rules.
    #[error("bad {what} {input:?}: {reason}")]
    BadName {
        /// "user name" or "room name".
        what: &'static str,
        /// What was typed (a name, not message content).
        input: String,
        /// Why.
        reason: NameError,
    },
    /// `/join` with something that is neither `#room` nor an invite link.
    #[error("not a room or invite link; usage: {usage}")]
    BadJoin {
        /// The usage line.
        usage: &'static str,
    },
}

/// Every command with its usage and what it does, for the palette and help.
pub(crate) const COMMANDS: &[(&str, &str, &str)] = &[
    ("msg", "/msg @user [text]", "open a chat with a user"),
    ("room", "/room create #name", "create a room"),
    ("invite", "/invite @user [#room]", "invite a user to a room"),
    ("link", "/link [#room]", "make an invite link"),
    ("join", "/join #room | LINK", "accept an invitation or link"),
    ("leave", "/leave [#room]", "leave a room"),
    ("kick", "/kick @user [#room]", "remove a member"),
    ("members", "/members [#room]", "list a room's members"),
    ("file", "/file PATH", "send a file"),
    ("safety", "/safety [@user]", "show a safety number"),
    ("verify", "/verify [@user]", "mark a safety number verified"),
    ("profile", "/profile NAME", "set your display name"),
    ("search", "/search WORDS", "search your messages"),
    ("help", "/help", "keys and commands"),
    ("quit", "/quit", "leave spider"),
];

fn usage(cmd: &str) -> &'static str {
    COMMANDS
        .iter()
        .find(|(c, _, _)| *c == cmd)
        .map_or("/help", |(_, u, _)| u)
}

fn user(input: &str) -> Result<Username, CommandError> {
    Username::parse(input).map_err(|reason| CommandError::BadName {
        what: "user name",
        input: input.to_owned(),
        reason,
    })
}

fn room(input: &str) -> Result<RoomName, CommandError> {
    RoomName::parse(input).map_err(|reason| CommandError::BadName {
        what: "room name",
        input: input.to_owned(),
        reason,
    })
}

fn new_room(input: &str) -> Result<RoomName, CommandError> {
    RoomName::parse_new(input).map_err(|reason| CommandError::BadName {
        what: "room name",
        input: input.to_owned(),
        reason,
    })
}

/// Splits off the first word; the rest keeps its inner spacing and newlines.
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// Arguments as words, refusing more than `max`.
fn words<'a>(rest: &'a str, max: usize, cmd: &str) -> Result<Vec<&'a str>, CommandError> {
    let w: Vec<&str> = rest.split_whitespace().collect();
    if w.len() > max {
        return Err(CommandError::TooMany { usage: usage(cmd) });
    }
    Ok(w)
}

/// An optional single `#room` argument.
fn opt_room(rest: &str, cmd: &str) -> Result<Option<RoomName>, CommandError> {
    words(rest, 1, cmd)?.first().map(|r| room(r)).transpose()
}

/// An optional single `@user` argument.
fn opt_user(rest: &str, cmd: &str) -> Result<Option<Username>, CommandError> {
    words(rest, 1, cmd)?.first().map(|u| user(u)).transpose()
}

/// `@user [#room]`.
fn user_and_room(
    rest: &str,
    cmd: &'static str,
) -> Result<(Username, Option<RoomName>), CommandError> {
    let w = words(rest, 2, cmd)?;
    let Some(u) = w.first() else {
        return Err(CommandError::Missing {
            what: "user",
            usage: usage(cmd),
        });
    };
    Ok((user(u)?, w.get(1).map(|r| room(r)).transpose()?))
}

/// Prefix of an invite link as `/link` prints it.
pub(crate) const LINK_PREFIX: &str = "spider://join/";

/// An invite link: `spider://join/HEX` or the bare 32-digit hex token.
pub(crate) fn parse_link(s: &str) -> Option<LinkToken> {
    LinkToken::from_hex(s.strip_prefix(LINK_PREFIX).unwrap_or(s))
}

/// Parses one composer line that starts with `/`.
pub(crate) fn parse(line: &str) -> Result<Command, CommandError> {
    let Some(body) = line.trim_start().strip_prefix('/') else {
        return Err(CommandError::NotACommand);
    };
    let (name, rest) = split_word(body);
    let name = name.to_ascii_lowercase();
    let missing = |what| CommandError::Missing {
        what,
        usage: usage(&name),
    };
    Ok(match name.as_str() {
        "msg" | "m" => {
            let (u, text) = split_word(rest);
            if u.is_empty() {
                return Err(missing("user"));
            }
            let text = text.trim_end();
            Command::Msg {
                user: user(u)?,
                text: (!text.is_empty()).then(|| text.to_owned()),
            }
        }
        "room" => {
            let w = words(rest, 2, "room")?;
            match (w.first().copied(), w.get(1)) {
                (Some("create"), Some(n)) => Command::RoomCreate { name: new_room(n)? },
                (Some("create"), None) => return Err(missing("room name")),
                _ => return Err(missing("\"create\" and a room name")),
            }
        }
        "invite" => {
            let (user, room) = user_and_room(rest, "invite")?;
            Command::Invite { user, room }
        }
        "kick" => {
            let (user, room) = user_and_room(rest, "kick")?;
            Command::Kick { user, room }
        }
        "link" => Command::Link {
            room: opt_room(rest, "link")?,
        },
        "join" => {
            let w = words(rest, 1, "join")?;
            let Some(t) = w.first() else {
                return Err(missing("room or link"));
            };
            if let Some(token) = parse_link(t) {
                Command::Join {
                    target: JoinTarget::Link(token),
                }
            } else if t.starts_with('#') {
                Command::Join {
                    target: JoinTarget::Room(room(t)?),
                }
            } else if t.starts_with(LINK_PREFIX) {
                return Err(CommandError::BadJoin {
                    usage: usage("join"),
                });
            } else {
                // A bare word is taken as a room name, with the naming
                // rules' error if it is not one.
                match RoomName::parse(t) {
                    Ok(r) => Command::Join {
                        target: JoinTarget::Room(r),
                    },
                    Err(_) => {
                        return Err(CommandError::BadJoin {
                            usage: usage("join"),
                        });
                    }
                }
            }
        }
        "leave" => Command::Leave {
            room: opt_room(rest, "leave")?,
        },
        "members" => Command::Members {
            room: opt_room(rest, "members")?,
        },
        "file" => {
            let p = rest.trim();
            if p.is_empty() {
                return Err(missing("path"));
            }
            Command::File {
                path: PathBuf::from(p),
            }
        }
        "safety" => Command::Safety {
            user: opt_user(rest, "safety")?,
        },
        "verify" => Command::Verify {
            user: opt_user(rest, "verify")?,
        },
        "profile" => {
            let n = rest.trim();
            if n.is_empty() {
                return Err(missing("display name"));
            }
            Command::Profile {
                display_name: n.to_owned(),
            }
        }
        "search" => {
            let q = rest.trim();
            if q.is_empty() {
                return Err(missing("words to search for"));
            }
            Command::Search {
                query: q.to_owned(),
            }
        }
        "help" | "h" | "?" => {
            words(rest, 0, "help")?;
            Command::Help
        }
        "quit" | "q" | "exit" => {
            words(rest, 0, "quit")?;
            Command::Quit
        }
        _ => return Err(CommandError::Unknown(name)),
    })
}

/// Commands whose name starts with what follows the `/` in `input`, while
/// the user is still typing the command's name.
pub(crate) fn suggestions(input: &str) -> Vec<(&'static str, &'static str)> {
    let Some(body) = input.strip_prefix('/') else {
        return Vec::new();
    };
    if body.contains(char::is_whitespace) {
        return Vec::new();
    }
    COMMANDS
        .iter()
        .filter(|(c, _, _)| c.starts_with(body))
        .map(|(_, u, d)| (*u, *d))
        .collect()
}

/// The command palette: draws the suggestions for the composer's text just
/// above the composer. It has no state and takes no events; the composer
/// owns the text.
pub(crate) struct Palette;

impl Palette {
    /// Draws above `composer` (inside `bounds`), if there is anything to show.
    pub(crate) fn draw(f: &mut Frame<'_>, composer: Rect, bounds: Rect, input: &str) {
        let items = suggestions(input);
        if items.is_empty() || composer.y <= bounds.y {
            return;
        }
        let room = composer.y - bounds.y;
        let want = u16::try_from(items.len())
            .unwrap_or(u16::MAX)
            .saturating_add(2);
        let h = want.min(room).min(10);
        if h < 3 {
            return;
        }
        let area = Rect::new(composer.x, composer.y - h, composer.width, h);
        let lines: Vec<Line<'_>> = items
            .iter()
            .map(|(u, d)| {
                Line::from(vec![
                    Span::styled(
                        format!("{u:<24}"),
                        Style::new().add_modifier(Modifier::BOLD),
                    ),
                    Span::raw(*d),
                ])
            })
            .collect();
        f.render_widget(Clear, area);
        f.render_widget(
            Paragraph::new(lines).block(Block::new().borders(Borders::ALL).title(" commands ")),
            area,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Username {
        Username::parse(s).unwrap()
    }
    fn r(s: &str) -> RoomName {
        RoomName::parse(s).unwrap()
    }

    #[test]
    fn msg() {
        assert_eq!(
            parse("/msg @bob").unwrap(),
            Command::Msg {
                user: u("bob"),
                text: None
            }
        );
        assert_eq!(
            parse("/msg bob  hello   there\nsecond line ").unwrap(),
            Command::Msg {
                user: u("bob"),
                text: Some("hello   there\nsecond line".into())
            }
        );
        assert!(matches!(
            parse("/msg"),
            Err(CommandError::Missing { what: "user", .. })
        ));
        assert!(matches!(
            parse("/msg @b"),
            Err(CommandError::BadName {
                reason: NameError::TooShort,
                ..
            })
        ));
        assert!(matches!(
            parse("/msg @bob!"),
            Err(CommandError::BadName {
                reason: NameError::BadCharacter,
                ..
            })
        ));
    }

    #[test]
    fn room_create() {
        assert_eq!(
            parse("/room create #rust").unwrap(),
            Command::RoomCreate { name: r("rust") }
        );
        assert_eq!(
            parse("/room create Rust").unwrap(),
            Command::RoomCreate { name: r("rust") }
        );
        assert!(matches!(
            parse("/room create"),
            Err(CommandError::Missing { .. })
        ));
        assert!(matches!(parse("/room"), Err(CommandError::Missing { .. })));
        assert!(matches!(
            parse("/room delete #x"),
            Err(CommandError::Missing { .. })
        ));
        assert!(matches!(
            parse("/room create a b"),
            Err(CommandError::TooMany { .. })
        ));
        // Claiming a reserved name is refused at creation.
        assert!(matches!(
            parse("/room create #admin"),
            Err(CommandError::BadName {
                reason: NameError::Reserved,
                ..
            })
        ));
    }

    #[test]
    fn invite_and_kick() {
        assert_eq!(
            parse("/invite @bob").unwrap(),
            Command::Invite {
                user: u("bob"),
                room: None
            }
        );
        assert_eq!(
            parse("/invite @bob #rust").unwrap(),
            Command::Invite {
                user: u("bob"),
                room: Some(r("rust"))
            }
        );
        assert_eq!(
            parse("/kick bob rust").unwrap(),
            Command::Kick {
                user: u("bob"),
                room: Some(r("rust"))
            }
        );
        assert!(matches!(
            parse("/invite"),
            Err(CommandError::Missing { .. })
        ));
        assert!(matches!(parse("/kick"), Err(CommandError::Missing { .. })));
        assert!(matches!(
            parse("/kick @bob #rust extra"),
            Err(CommandError::TooMany { .. })
        ));
        assert!(matches!(
            parse("/invite @bob #r"),
            Err(CommandError::BadName {
                what: "room name",
                ..
            })
        ));
    }

    #[test]
    fn link_leave_members() {
        assert_eq!(parse("/link").unwrap(), Command::Link { room: None });
        assert_eq!(
            parse("/link #rust").unwrap(),
            Command::Link {
                room: Some(r("rust"))
            }
        );
        assert_eq!(parse("/leave").unwrap(), Command::Leave { room: None });
        assert_eq!(
            parse("/members #rust").unwrap(),
            Command::Members {
                room: Some(r("rust"))
            }
        );
        assert!(matches!(
            parse("/leave a b"),
            Err(CommandError::TooMany { .. })
        ));
        assert!(matches!(
            parse("/members #1x"),
            Err(CommandError::BadName { .. })
        ));
        assert!(matches!(
            parse("/link #.."),
            Err(CommandError::BadName { .. })
        ));
    }

    #[test]
    fn join_room_or_link() {
        let hex = "00112233445566778899aabbccddeeff";
        let token = LinkToken::from_hex(hex).unwrap();
        assert_eq!(
            parse(&format!("/join {LINK_PREFIX}{hex}")).unwrap(),
            Command::Join {
                target: JoinTarget::Link(token)
            }
        );
        assert_eq!(
            parse(&format!("/join {hex}")).unwrap(),
            Command::Join {
                target: JoinTarget::Link(token)
            }
        );
        assert_eq!(
            parse("/join #rust").unwrap(),
            Command::Join {
                target: JoinTarget::Room(r("rust"))
            }
        );
        assert!(matches!(parse("/join"), Err(CommandError::Missing { .. })));
        assert!(matches!(
            parse(&format!("/join {LINK_PREFIX}nothex")),
            Err(CommandError::BadJoin { .. })
        ));
        assert!(matches!(
            parse("/join 12345"),
            Err(CommandError::BadJoin { .. })
        ));
        assert!(matches!(
            parse("/join #a"),
            Err(CommandError::BadName { .. })
        ));
    }

    #[test]
    fn file() {
        assert_eq!(
            parse("/file /tmp/a b.png").unwrap(),
            Command::File {
                path: PathBuf::from("/tmp/a b.png")
            }
        );
        assert!(matches!(
            parse("/file   "),
            Err(CommandError::Missing { what: "path", .. })
        ));
    }

    #[test]
    fn safety_and_verify() {
        assert_eq!(parse("/safety").unwrap(), Command::Safety { user: None });
        assert_eq!(
            parse("/safety @bob").unwrap(),
            Command::Safety {
                user: Some(u("bob"))
            }
        );
        assert_eq!(
            parse("/verify bob").unwrap(),
            Command::Verify {
                user: Some(u("bob"))
            }
        );
        assert!(matches!(
            parse("/verify @x"),
            Err(CommandError::BadName { .. })
        ));
        assert!(matches!(
            parse("/safety @bob @carol"),
            Err(CommandError::TooMany { .. })
        ));
    }

    #[test]
    fn profile_and_search() {
        assert_eq!(
            parse("/profile Bob  Smith ").unwrap(),
            Command::Profile {
                display_name: "Bob  Smith".into()
            }
        );
        assert_eq!(
            parse("/search hello world").unwrap(),
            Command::Search {
                query: "hello world".into()
            }
        );
        assert!(matches!(
            parse("/profile"),
            Err(CommandError::Missing { .. })
        ));
        assert!(matches!(
            parse("/search  "),
            Err(CommandError::Missing { .. })
        ));
    }

    #[test]
    fn help_and_quit() {
        assert_eq!(parse("/help").unwrap(), Command::Help);
        assert_eq!(parse("/HELP").unwrap(), Command::Help);
        assert_eq!(parse("/quit").unwrap(), Command::Quit);
        assert_eq!(parse("/q").unwrap(), Command::Quit);
        assert!(matches!(
            parse("/quit now"),
            Err(CommandError::TooMany { .. })
        ));
        assert!(matches!(
            parse("/help me"),
            Err(CommandError::TooMany { .. })
        ));
    }

    #[test]
    fn unknown_and_not_a_command() {
        assert_eq!(
            parse("/frobnicate"),
            Err(CommandError::Unknown("frobnicate".into()))
        );
        assert_eq!(parse("/"), Err(CommandError::Unknown(String::new())));
        assert_eq!(parse("hello"), Err(CommandError::NotACommand));
    }

    #[test]
    fn errors_read_well() {
        let e = parse("/invite").unwrap_err().to_string();
        assert_eq!(e, "missing user; usage: /invite @user [#room]");
        let e = parse("/msg @b").unwrap_err().to_string();
        assert!(e.starts_with("bad user name \"@b\": too short"), "{e}");
    }

    #[test]
    fn every_command_has_a_usage_line_and_parses_its_own_name() {
        for (name, usage_line, _) in COMMANDS {
            assert!(usage_line.starts_with(&format!("/{name}")));
            // Bare names fail, if at all, with an argument error, never Unknown.
            assert!(!matches!(
                parse(&format!("/{name}")),
                Err(CommandError::Unknown(_))
            ));
        }
    }

    #[test]
    fn palette_suggests_by_prefix_until_a_space() {
        let s = suggestions("/s");
        assert_eq!(s.len(), 2);
        assert!(s[0].0.starts_with("/safety"));
        assert!(suggestions("/safety ").is_empty());
        assert!(suggestions("hello").is_empty());
        assert_eq!(suggestions("/").len(), COMMANDS.len());
    }
}
