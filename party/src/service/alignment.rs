//! The party's side of alignment requests (private set intersection): a fresh key and
//! shuffle per session, blinded pages, re-blinding, handle assignment; and the row lookups
//! training does through the alignment.

use tessera_common::wire::{ErrorCode, Request, Response};

use super::{PartyService, error};
use crate::align::{Alignment, ReblindError};

impl PartyService {
    /// Answers `PsiInit`, `PsiBlind`, `PsiReblind` and `PsiAssign`.
    pub(super) fn alignment_request(&self, request: Request) -> Response {
        if !self.policy.enabled {
            return self.refuse_training();
        }
        match request {
            Request::PsiInit { session } => {
                let a = Alignment::new(session, self.data.len());
                let n = a.len() as u64;
                match self.alignment.write() {
                    Ok(mut g) => *g = Some(a),
                    Err(_) => return error(ErrorCode::Internal, "alignment state poisoned"),
                }
                Response::PsiReady { n }
            }
            Request::PsiBlind {
                session,
                offset,
                limit,
            } => {
                let limit = (limit as usize).min(self.limits.max_batch);
                self.with_alignment(session, |a| Response::Points {
                    points: a.blind(self.data.ids(), offset, limit),
                })
            }
            Request::PsiReblind { session, points } => {
                if points.len() / tessera_common::psi::POINT_LEN > self.limits.max_batch {
                    return error(ErrorCode::BadRequest, "too many points in one request");
                }
                let Ok(mut g) = self.alignment.write() else {
                    return error(ErrorCode::Internal, "alignment state poisoned");
                };
                match g.as_mut() {
                    Some(a) if a.session() == session => {
                        match a.reblind(&points, self.policy.max_peer_customers) {
                            Ok(points) => Response::Points { points },
                            Err(e @ (ReblindError::Closed | ReblindError::OverCap(_))) => {
                                tracing::warn!(session, error = %e, "re-blinding refused");
                                error(
                                    ErrorCode::PolicyRefused,
                                    format!("refused by this bank's training policy: {e}"),
                                )
                            }
                            Err(e) => error(ErrorCode::BadRequest, e.to_string()),
                        }
                    }
                    _ => error(ErrorCode::NoSession, format!("no alignment {session}")),
                }
            }
            Request::PsiAssign {
                session,
                positions,
                handles,
            } => {
                if positions.len() > self.limits.max_batch {
                    return error(ErrorCode::BadRequest, "too many handles in one request");
                }
                let Ok(mut g) = self.alignment.write() else {
                    return error(ErrorCode::Internal, "alignment state poisoned");
                };
                match g.as_mut() {
                    Some(a) if a.session() == session => match a.assign(&positions, &handles) {
                        Ok(()) => Response::Ack,
                        Err(e) => error(ErrorCode::BadRequest, e.to_string()),
                    },
                    _ => error(ErrorCode::NoSession, format!("no alignment {session}")),
                }
            }
            _ => error(ErrorCode::BadRequest, "not an alignment request"),
        }
    }

    pub(super) fn with_alignment(&self, session: u64, f: impl FnOnce(&Alignment) -> Response) -> Response {
        let Ok(g) = self.alignment.read() else {
            return error(ErrorCode::Internal, "alignment state poisoned");
        };
        match g.as_ref() {
            Some(a) if a.session() == session => f(a),
            _ => error(ErrorCode::NoSession, format!("no alignment {session}")),
        }
    }

    /// Rows of `handles` under the alignment of `session` (`None` for handles this party
    /// does not hold).
    pub(super) fn rows_of(&self, session: u64, handles: &[u64]) -> Result<Vec<Option<usize>>, Response> {
        let Ok(g) = self.alignment.read() else {
            return Err(error(ErrorCode::Internal, "alignment state poisoned"));
        };
        match g.as_ref() {
            Some(a) if a.session() == session => Ok(handles.iter().map(|&h| a.row(h)).collect()),
            _ => Err(error(ErrorCode::NoSession, format!("no alignment {session}"))),
        }
    }
}
