//! What is known of each mailbox of an account (UIDVALIDITY, UIDNEXT,
//! MESSAGES, HIGHESTMODSEQ, UNSEEN), and the one rule that says a mailbox
//! changed: a value the server gives now differs from the one kept. Every
//! path (NOTIFY's STATUS, an IDLE connection's EXAMINE, STATUS polling, the
//! listing after a reconnect) goes through it, so a reconnect reports
//! exactly the mailboxes that changed meanwhile.

use std::collections::HashMap;

use imap_proto::{MailboxDatum, Response, ResponseCode, StatusAttribute};

/// The values a server gave for one mailbox; `None` where it gave none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailboxStatus {
    pub uid_validity: Option<u32>,
    pub uid_next: Option<u32>,
    pub messages: Option<u32>,
    /// Moves with every flag change where the server offers CONDSTORE.
    pub highest_modseq: Option<u64>,
    pub unseen: Option<u32>,
}

/// The attributes asked for in STATUS.
pub fn status_items(condstore: bool) -> &'static str {
    if condstore {
        "(UIDVALIDITY UIDNEXT MESSAGES UNSEEN HIGHESTMODSEQ)"
    } else {
        "(UIDVALIDITY UIDNEXT MESSAGES UNSEEN)"
    }
}

impl MailboxStatus {
    pub fn from_attributes(attributes: &[StatusAttribute]) -> MailboxStatus {
        let mut status = MailboxStatus::default();
        for attribute in attributes {
            match *attribute {
                // 0 is no UIDVALIDITY (RFC 3501: nz-number); Dovecot
                // gives it for a mailbox still being made.
                StatusAttribute::UidValidity(value) => status.uid_validity = Some(value).filter(|v| *v != 0),
                StatusAttribute::UidNext(value) => status.uid_next = Some(value),
                StatusAttribute::Messages(value) => status.messages = Some(value),
                StatusAttribute::HighestModSeq(value) => status.highest_modseq = Some(value),
                StatusAttribute::Unseen(value) => status.unseen = Some(value),
                _ => {}
            }
        }
        status
    }

    /// The status an EXAMINE's responses give.
    pub fn from_examine(responses: &[Response<'static>]) -> MailboxStatus {
        let mut status = MailboxStatus::default();
        for response in responses {
            match response {
                Response::MailboxData(MailboxDatum::Exists(count)) => status.messages = Some(*count),
                Response::Data { outcome, .. } => match outcome.code {
                    Some(ResponseCode::UidValidity(value)) => {
                        status.uid_validity = Some(value).filter(|v| *v != 0)
                    }
                    Some(ResponseCode::UidNext(value)) => status.uid_next = Some(value),
                    Some(ResponseCode::HighestModSeq(value)) => status.highest_modseq = Some(value),
                    _ => {}
                },
                _ => {}
            }
        }
        status
    }

    /// Whether `now` shows a change against `self`: new or removed
    /// messages always, flags only when `flags` (HIGHESTMODSEQ, UNSEEN).
    /// Values missing on either side say nothing.
    pub fn changed(&self, now: &MailboxStatus, flags: bool) -> bool {
        fn differs<T: PartialEq>(kept: Option<T>, now: Option<T>) -> bool {
            matches!((kept, now), (Some(kept), Some(now)) if kept != now)
        }
        differs(self.uid_validity, now.uid_validity)
            || differs(self.uid_next, now.uid_next)
            || differs(self.messages, now.messages)
            || (flags
                && (differs(self.highest_modseq, now.highest_modseq) || differs(self.unseen, now.unseen)))
    }

    /// Takes the values `now` gives.
    pub fn update(&mut self, now: &MailboxStatus) {
        self.uid_validity = now.uid_validity.or(self.uid_validity);
        self.uid_next = now.uid_next.or(self.uid_next);
        self.messages = now.messages.or(self.messages);
        self.highest_modseq = now.highest_modseq.or(self.highest_modseq);
        self.unseen = now.unseen.or(self.unseen);
    }
}

/// Every watched mailbox of one account, by its server name.
#[derive(Debug, Default)]
pub struct Mailboxes {
    known: HashMap<String, MailboxStatus>,
    report_flags: bool,
}

impl Mailboxes {
    pub fn new(report_flags: bool) -> Mailboxes {
        Mailboxes {
            known: HashMap::new(),
            report_flags,
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.known.keys()
    }

    /// Every mailbox with what is known of it.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &MailboxStatus)> {
        self.known.iter()
    }

    /// What is known of the mailbox `name`, if it is watched.
    pub fn get(&self, name: &str) -> Option<&MailboxStatus> {
        self.known.get(name)
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// A mailbox's status now; true when that is a change (a mailbox not
    /// known before is one).
    pub fn status(&mut self, name: &str, now: &MailboxStatus) -> bool {
        match self.known.get_mut(name) {
            Some(kept) => {
                let changed = kept.changed(now, self.report_flags);
                kept.update(now);
                changed
            }
            None => {
                self.known.insert(name.to_string(), *now);
                true
            }
        }
    }

    /// A whole listing: the mailboxes that are new, gone or changed.
    pub fn listing(&mut self, listed: &[(String, MailboxStatus)]) -> Vec<String> {
        let mut changed: Vec<String> = listed
            .iter()
            .filter(|(name, status)| self.status(name, status))
            .map(|(name, _)| name.clone())
            .collect();
        let present: std::collections::HashSet<&str> = listed.iter().map(|(name, _)| name.as_str()).collect();
        let gone: Vec<String> = self
            .known
            .keys()
            .filter(|name| !present.contains(name.as_str()))
            .cloned()
            .collect();
        for name in gone {
            self.known.remove(&name);
            changed.push(name);
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(
        uid_validity: u32,
        uid_next: u32,
        messages: u32,
        modseq: Option<u64>,
        unseen: Option<u32>,
    ) -> MailboxStatus {
        MailboxStatus {
            uid_validity: Some(uid_validity),
            uid_next: Some(uid_next),
            messages: Some(messages),
            highest_modseq: modseq,
            unseen,
        }
    }

    #[test]
    fn what_counts_as_a_change() {
        let kept = status(1, 10, 5, Some(40), Some(2));
        // (now, with flags reported, is it a change, why)
        let cases = [
            (status(1, 10, 5, Some(40), Some(2)), false, false, "nothing moved"),
            (status(1, 11, 6, Some(41), Some(3)), false, true, "a new message"),
            (status(1, 10, 4, Some(42), Some(2)), false, true, "an expunge"),
            (
                status(2, 10, 5, Some(40), Some(2)),
                false,
                true,
                "UIDVALIDITY changed: the mailbox was made anew",
            ),
            (
                status(1, 10, 5, Some(41), Some(1)),
                false,
                false,
                "flags only, not asked for",
            ),
            (
                status(1, 10, 5, Some(41), Some(2)),
                true,
                true,
                "flags only, HIGHESTMODSEQ moved",
            ),
            (
                status(1, 10, 5, None, Some(1)),
                true,
                true,
                "flags only, no CONDSTORE, UNSEEN moved",
            ),
            (
                MailboxStatus {
                    messages: Some(5),
                    ..Default::default()
                },
                true,
                false,
                "values not given say nothing",
            ),
        ];
        for (now, flags, expected, why) in cases {
            assert_eq!(kept.changed(&now, flags), expected, "{why}");
        }
    }

    #[test]
    fn uidvalidity_0_is_no_uidvalidity() {
        let kept =
            MailboxStatus::from_attributes(&[StatusAttribute::UidValidity(0), StatusAttribute::UidNext(1)]);
        let now =
            MailboxStatus::from_attributes(&[StatusAttribute::UidValidity(7), StatusAttribute::UidNext(1)]);
        assert_eq!(kept.uid_validity, None);
        assert!(
            !kept.changed(&now, true),
            "a mailbox made just now is not reported twice"
        );
    }

    #[test]
    fn a_listing_reports_new_gone_and_changed_mailboxes_only() {
        let mut mailboxes = Mailboxes::new(false);
        let first = vec![
            ("INBOX".to_string(), status(1, 10, 5, None, None)),
            ("a".to_string(), status(1, 3, 2, None, None)),
            ("b".to_string(), status(1, 7, 7, None, None)),
        ];
        assert_eq!(mailboxes.listing(&first).len(), 3, "all are new the first time");
        let after_reconnect = vec![
            ("INBOX".to_string(), status(1, 11, 6, None, None)),
            ("a".to_string(), status(1, 3, 2, None, None)),
            ("c".to_string(), status(1, 1, 0, None, None)),
        ];
        let mut changed = mailboxes.listing(&after_reconnect);
        changed.sort();
        assert_eq!(changed, ["INBOX", "b", "c"]);
        assert!(mailboxes.listing(&after_reconnect).is_empty());
    }
}
