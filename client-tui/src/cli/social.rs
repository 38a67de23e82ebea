//! `room link`, `profile set` and `contacts`: invite links, the encrypted
//! profile and presence, through the SDK's social requests.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail};
use spider_client::engine::{ClientError, Event};
use spider_client::social::{ContactPresence, MAX_DISPLAY_NAME_LEN, invite_link};
use spider_protocol::ids::{LinkToken, MessageId, Timestamp, UserId};
use spider_protocol::message::{Presence, RoomAction};

use super::{
    Opened, REQUEST_PATIENCE, Session, cli_config, find_room, open_profile, relay_text, settle,
    start, utc,
};
use crate::worker::TransportChoice;

/// Parses a link lifetime: a whole number and a unit, `s`, `m`, `h`, `d`
/// or `w` (`90m`, `1h`, `7d`).
pub(super) fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("{s:?} is not a duration such as 30m, 1h or 7d"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => bail!("{s:?} is not a duration such as 30m, 1h or 7d (units: s, m, h, d, w)"),
    };
    let secs = n
        .checked_mul(unit_secs)
        .filter(|s| *s > 0)
        .ok_or_else(|| anyhow!("{s:?}: the duration must be above zero and sensible"))?;
    Ok(Duration::from_secs(secs))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Runs `body` on a signed-in session whose backlog went by, then stops
/// the client whatever happened.
async fn with_session<T>(
    opened: Opened,
    transport: TransportChoice,
    body: impl AsyncFnOnce(&mut Session) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let cfg = cli_config(&opened.profile)?;
    let mut s = start(opened.profile, &cfg, transport).await?;
    let result = async {
        settle(&mut s).await?;
        body(&mut s).await
    }
    .await;
    s.client.shutdown().await;
    result
}

/// Waits for the first event `f` maps to something; errors `f` leaves
/// alone are printed as warnings.
async fn wait_for<T>(
    s: &mut Session,
    what: &str,
    mut f: impl FnMut(&Event) -> Option<anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let deadline = tokio::time::sleep(REQUEST_PATIENCE);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => bail!("the relay did not answer {what} within {}s", REQUEST_PATIENCE.as_secs()),
            e = s.events.recv() => match e {
                Some(e) => {
                    if let Some(r) = f(&e) {
                        return r;
                    }
                    if let Event::Error(e) = e {
                        eprintln!("warning: {e}");
                    }
                }
                None => bail!("the client stopped"),
            }
        }
    }
}

/// `spider room link NAME [--expires D] [--uses N]`: prints the link.
pub(super) async fn room_link(
    dir: &Path,
    name: &str,
    expires: Option<&str>,
    uses: Option<u32>,
    transport: TransportChoice,
) -> anyhow::Result<()> {
    let expires = expires.map(parse_duration).transpose()?;
    if uses == Some(0) {
        bail!("--uses must be at least 1");
    }
    let opened = open_profile(dir)?;
    let room = find_room(&opened.profile, name)?;
    let token = with_session(opened, transport, async |s: &mut Session| {
        let expires_at = expires.map(|d| {
            let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            Timestamp(now_ms().saturating_add(ms))
        });
        s.client.create_link(room, expires_at, uses).await?;
        wait_for(s, "the link request", |e| match e {
            Event::LinkCreated { room: r, token } if *r == room => Some(Ok::<LinkToken, _>(*token)),
            Event::RoomRequestDone {
                result: Err(ClientError::Relay { code, text, .. }),
                action: RoomAction::CreateLink { .. },
                ..
            } => Some(Err(anyhow!(
                "the relay refused the link: {code}{}",
                relay_text(text)
            ))),
            _ => None,
        })
        .await
    })
    .await?;
    println!("{}", invite_link(&token));
    let name = name.strip_prefix('#').unwrap_or(name);
    let mut limits = Vec::new();
    if let Some(n) = uses {
        limits.push(format!("{n} use(s)"));
    }
    if let Some(e) = expires {
        limits.push(format!("until {}", utc(now_ms() + e.as_secs() * 1000)));
    }
    let limits = if limits.is_empty() {
        String::new()
    } else {
        format!(" ({})", limits.join(", "))
    };
    eprintln!(
        "anyone with this link can join #{name}{limits} until you revoke it: \
         spider room revoke {name} LINK"
    );
    Ok(())
}

/// `spider profile set --name TEXT`: stores the encrypted profile and gives
/// its key to every contact.
pub(crate) async fn profile_set(
    dir: &Path,
    name: &str,
    transport: TransportChoice,
) -> anyhow::Result<()> {
    if name.len() > MAX_DISPLAY_NAME_LEN {
        bail!("the display name is longer than {MAX_DISPLAY_NAME_LEN} bytes");
    }
    let opened = open_profile(dir)?;
    let shared = with_session(opened, transport, async |s: &mut Session| {
        let ids = s.client.set_display_name(name).await?;
        let mut waiting: HashSet<MessageId> = ids.iter().copied().collect();
        let mut saved = false;
        let mut failed = 0;
        wait_for(s, "the profile", |e| {
            match e {
                Event::ProfileSaved { result: Ok(()) } => saved = true,
                Event::ProfileSaved {
                    result: Err(ClientError::Relay { code, text, .. }),
                } => {
                    return Some(Err(anyhow!(
                        "the relay refused the profile: {code}{}",
                        relay_text(text)
                    )));
                }
                Event::ProfileSaved { result: Err(e) } => return Some(Err(anyhow!(e.clone()))),
                Event::Sent { id } => {
                    waiting.remove(id);
                }
                // A key message the relay refused (an account that is
                // gone) leaves the outbox.
                Event::Error(
                    e @ ClientError::Relay {
                        message: Some(m), ..
                    },
                ) if waiting.remove(m) => {
                    eprintln!("warning: a contact did not get the profile key: {e}");
                    failed += 1;
                }
                _ => {}
            }
            (saved && waiting.is_empty()).then_some(Ok(()))
        })
        .await?;
        anyhow::Ok(ids.len() - failed)
    })
    .await?;
    eprintln!("profile saved (encrypted); {shared} contact(s) got its key");
    Ok(())
}

fn presence_text(p: Option<Presence>) -> String {
    match p {
        Some(Presence::Online) => "online".to_owned(),
        Some(Presence::Away) => "away".to_owned(),
        Some(Presence::Offline { last_seen: Some(t) }) => {
            format!("offline, last seen {}", utc(t.0))
        }
        Some(Presence::Offline { last_seen: None }) => "offline".to_owned(),
        None => "unknown".to_owned(),
    }
}

/// `spider contacts`: contacts with presence as the relay reports it, the
/// display names from their profiles, and verification marks.
pub(crate) async fn contacts(dir: &Path, transport: TransportChoice) -> anyhow::Result<()> {
    let opened = open_profile(dir)?;
    let (listed, details) = with_session(opened, transport, async |s: &mut Session| {
        s.client.list_contacts().await?;
        let listed: Vec<ContactPresence> = wait_for(s, "the contact list", |e| match e {
            Event::ContactsListed { contacts } => Some(Ok(contacts.clone())),
            _ => None,
        })
        .await?;
        let mut fetching: HashSet<UserId> =
            s.client.refresh_profiles().await?.into_iter().collect();
        if !fetching.is_empty() {
            wait_for(s, "the profile requests", |e| {
                if let Event::ProfileFetched { user, .. } = e {
                    fetching.remove(user);
                }
                fetching.is_empty().then_some(Ok(()))
            })
            .await?;
        }
        let details = s.client.contacts().await?;
        anyhow::Ok((listed, details))
    })
    .await?;
    let presence: HashMap<UserId, Option<Presence>> =
        listed.into_iter().map(|c| (c.user, c.presence)).collect();
    if details.is_empty() {
        eprintln!("no contacts yet: they appear once you message someone");
    }
    for d in details {
        let verified = if d.verified { "\tverified" } else { "" };
        let display = d
            .display_name
            .map_or_else(String::new, |n| format!("\tdisplay name: {n}"));
        println!(
            "{}\t{}\t{} device(s){verified}{display}",
            d.contact.username,
            presence_text(presence.get(&d.contact.user).copied().flatten()),
            d.contact.devices.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_lifetimes() {
        assert_eq!(parse_duration("90m").ok(), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h").ok(), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_duration("7d").ok(),
            Some(Duration::from_secs(604_800))
        );
        assert_eq!(
            parse_duration("2w").ok(),
            Some(Duration::from_secs(1_209_600))
        );
        assert_eq!(parse_duration("30s").ok(), Some(Duration::from_secs(30)));
        for bad in [
            "",
            "h",
            "10",
            "0h",
            "1y",
            "-1h",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn presence_words() {
        assert_eq!(presence_text(Some(Presence::Online)), "online");
        assert_eq!(presence_text(None), "unknown");
        assert_eq!(
            presence_text(Some(Presence::Offline {
                last_seen: Some(Timestamp(86_400_000))
            })),
            "offline, last seen 1970-01-02 00:00:00Z"
        );
    }
}
