//! The connection handshake: a party's [`Hello`] and the coordinator's decision.
//!
//! The TLS layer has already verified both certificates against the federation CA; this
//! step binds the verified certificate identity to the party id the peer claims, checks it
//! is a configured member, and checks the protocol version.

use tessera_certs::Identity;

use crate::protocol::ProtocolError;
use crate::wire::{Hello, Message, PROTOCOL_VERSION, PartyId, Reject, RejectCode, Welcome};

/// The hello a party sends first; `instance` is drawn once per party process.
pub fn hello(party_id: &PartyId, instance: u64) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        party_id: party_id.clone(),
        software: format!("tessera-party {}", env!("CARGO_PKG_VERSION")),
        instance,
    }
}

/// One identity, one live party: the coordinator's decision on an accepted [`Hello`] given the
/// process instance of the party's current live connection, if any. A new connection of the
/// same process (a reconnect, or the second connection of a certificate rotation) replaces the
/// old one; a connection from another process is refused while the current one lives, so a
/// stale or standby process cannot take over a party in the middle of a run. It is admitted
/// as soon as the live connection is gone (the standby takes over).
///
/// # Errors
/// A [`Reject`] with [`RejectCode::AlreadyConnected`].
pub fn admit(hello: &Hello, live_instance: Option<u64>) -> Result<(), Reject> {
    match live_instance {
        Some(live) if live != hello.instance => Err(Reject {
            code: RejectCode::AlreadyConnected,
            message: format!(
                "party {} is already connected from another process; one live connection per identity (retrying: this process takes over when that one goes)",
                hello.party_id
            ),
        }),
        _ => Ok(()),
    }
}

/// The coordinator's decision on a [`Hello`].
///
/// `cert_identity` is the identity read from the peer's verified certificate; `expected`
/// lists the federation's configured parties.
///
/// # Errors
/// A [`Reject`] to send back when the version differs, the certificate is not a party's or
/// names another party, or the party is not configured.
pub fn accept(
    hello: &Hello,
    cert_identity: &Identity,
    expected: &[PartyId],
    federation: &str,
) -> Result<Welcome, Reject> {
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(Reject {
            code: RejectCode::VersionMismatch,
            message: format!(
                "coordinator speaks protocol {PROTOCOL_VERSION}, party speaks {}",
                hello.protocol_version
            ),
        });
    }
    match cert_identity {
        Identity::Party(id) if *id == hello.party_id => {}
        other => {
            return Err(Reject {
                code: RejectCode::IdentityMismatch,
                message: format!(
                    "party claims to be {:?} but its certificate belongs to {other}",
                    hello.party_id.as_str()
                ),
            });
        }
    }
    if !expected.contains(&hello.party_id) {
        return Err(Reject {
            code: RejectCode::UnknownParty,
            message: format!(
                "party {} is not a configured member of this federation",
                hello.party_id
            ),
        });
    }
    Ok(Welcome {
        protocol_version: PROTOCOL_VERSION,
        federation: federation.to_string(),
    })
}

/// The party's check of the coordinator's answer to its hello.
///
/// # Errors
/// [`ProtocolError::Rejected`] with the coordinator's reason, a version or federation
/// mismatch, or an unexpected frame.
pub fn check_answer(answer: Message, federation: &str) -> Result<Welcome, ProtocolError> {
    match answer {
        Message::Welcome(w) if w.protocol_version != PROTOCOL_VERSION => {
            Err(ProtocolError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: w.protocol_version,
            })
        }
        Message::Welcome(w) if w.federation != federation => Err(ProtocolError::WrongFederation {
            ours: federation.to_string(),
            theirs: w.federation,
        }),
        Message::Welcome(w) => Ok(w),
        Message::Reject(r) => Err(ProtocolError::Rejected(r)),
        other => Err(ProtocolError::Frame(crate::wire::FrameError::Unexpected(
            other.kind(),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> PartyId {
        PartyId::new(s).unwrap()
    }

    #[test]
    fn accepts_matching_identity() {
        let h = hello(&id("bank-a"), 1);
        let w = accept(
            &h,
            &Identity::Party(id("bank-a")),
            &[id("bank-a"), id("bank-b")],
            "fed",
        )
        .unwrap();
        assert!(check_answer(Message::Welcome(w), "fed").is_ok());
    }

    #[test]
    fn refuses_certificate_of_another_party() {
        let h = hello(&id("bank-a"), 1);
        let r = accept(
            &h,
            &Identity::Party(id("bank-b")),
            &[id("bank-a"), id("bank-b")],
            "fed",
        )
        .unwrap_err();
        assert_eq!(r.code, RejectCode::IdentityMismatch);
        let r = accept(&h, &Identity::Coordinator, &[id("bank-a")], "fed").unwrap_err();
        assert_eq!(r.code, RejectCode::IdentityMismatch);
        let err = check_answer(Message::Reject(r), "fed").unwrap_err();
        assert!(err.is_permanent());
        assert!(err.to_string().contains("certificate belongs to coordinator"));
    }

    #[test]
    fn refuses_unconfigured_party_and_other_versions() {
        let h = hello(&id("bank-z"), 1);
        assert_eq!(
            accept(&h, &Identity::Party(id("bank-z")), &[id("bank-a")], "fed")
                .unwrap_err()
                .code,
            RejectCode::UnknownParty
        );
        let mut h = hello(&id("bank-a"), 1);
        h.protocol_version = PROTOCOL_VERSION + 1;
        let r = accept(&h, &Identity::Party(id("bank-a")), &[id("bank-a")], "fed").unwrap_err();
        assert_eq!(r.code, RejectCode::VersionMismatch);
    }

    #[test]
    fn party_checks_version_and_federation_of_welcome() {
        let w = Welcome {
            protocol_version: PROTOCOL_VERSION + 1,
            federation: "fed".into(),
        };
        assert!(matches!(
            check_answer(Message::Welcome(w), "fed"),
            Err(ProtocolError::VersionMismatch { .. })
        ));
        let w = Welcome {
            protocol_version: PROTOCOL_VERSION,
            federation: "x".into(),
        };
        assert!(matches!(
            check_answer(Message::Welcome(w), "fed"),
            Err(ProtocolError::WrongFederation { .. })
        ));
        assert!(matches!(
            check_answer(Message::Response(crate::wire::Response::Ack), "fed"),
            Err(ProtocolError::Frame(_))
        ));
    }

    #[test]
    fn one_live_connection_per_identity() {
        let h = hello(&id("bank-a"), 5);
        assert!(admit(&h, None).is_ok(), "nobody connected");
        assert!(
            admit(&h, Some(5)).is_ok(),
            "the same process reconnecting or rotating"
        );
        let r = admit(&h, Some(6)).unwrap_err();
        assert_eq!(r.code, RejectCode::AlreadyConnected);
        assert!(r.message.contains("bank-a"), "{}", r.message);
    }
}
