//! What an answer about a seat means (SPEC §5), and one check of one target
//! with Get seat. Only a 2xx with a seat or a 404 is conclusive: nothing
//! else can move `msfb_seat_active`, which is how an outage never looks
//! like a lost seat. A listed seat (`listing`) is read with the same
//! [`seat_outcome`], so Get seat and a listing can never disagree.
//!
//! How a request is made and retried is `request`.

use crate::store::{Answer, Failure, ItemType, SeatDetails, SeatState};
use crate::targets::{ErrorCode, Outcome, Reason};

use super::request::{CheckContext, with_retries};

/// A seat in `state`: conclusive, active only for state Active, with its
/// `dateAssigned` only when active.
pub fn seat_outcome(state: &SeatState, date_assigned: Option<f64>) -> Outcome {
    let active = *state == SeatState::Active;
    Outcome::Conclusive {
        active,
        assigned_at: date_assigned.filter(|_| active),
        negative: None,
    }
}

/// A 404: conclusive "no seat", counted with its item type.
pub fn not_found(item: ItemType) -> Outcome {
    Outcome::Conclusive {
        active: false,
        assigned_at: None,
        negative: Some((ErrorCode::Status(404), Reason::from(item))),
    }
}

/// A Get seat answer: conclusive for a seat or a 404, else the failure for
/// the retry rules to judge.
///
/// # Errors
/// The failure of an answer that says nothing about the seat.
pub fn conclude(answer: Answer<SeatDetails>) -> Result<Outcome, Failure> {
    match answer {
        Answer::Found(seat) => Ok(seat_outcome(&seat.state, seat.date_assigned)),
        Answer::NotFound(item) => Ok(not_found(item)),
        Answer::Failed(failure) => Err(failure),
    }
}

/// Checks one target with Get seat (SPEC §5).
pub async fn check(ctx: &CheckContext<'_>, product_id: &str, sku_id: &str, upn: &str) -> Outcome {
    let result = with_retries(ctx, |token| async move {
        conclude(ctx.client.get_seat(product_id, sku_id, upn, &token).await)
    })
    .await;
    result.unwrap_or_else(Outcome::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seat(state: SeatState) -> Answer<SeatDetails> {
        Answer::Found(SeatDetails {
            state,
            date_assigned: Some(7.0),
        })
    }

    #[test]
    fn the_spec_table_for_answers_about_the_seat() {
        assert_eq!(
            conclude(seat(SeatState::Active)).unwrap(),
            Outcome::Conclusive {
                active: true,
                assigned_at: Some(7.0),
                negative: None
            }
        );
        for state in [SeatState::Revoked, SeatState::Other("Frozen".into())] {
            assert!(matches!(
                conclude(seat(state)),
                Ok(Outcome::Conclusive {
                    active: false,
                    assigned_at: None,
                    ..
                })
            ));
        }
        for (item, reason) in [
            (ItemType::Seat, Reason::Seat),
            (ItemType::User, Reason::User),
            (ItemType::Inventory, Reason::Inventory),
            (ItemType::Unknown, Reason::Unknown),
        ] {
            assert_eq!(
                conclude(Answer::NotFound(item)).unwrap(),
                Outcome::Conclusive {
                    active: false,
                    assigned_at: None,
                    negative: Some((ErrorCode::Status(404), reason))
                }
            );
        }
        let failure = Failure {
            code: ErrorCode::Status(503),
            retry_after: None,
            detail: String::new(),
        };
        assert!(matches!(
            conclude(Answer::Failed(failure)),
            Err(Failure {
                code: ErrorCode::Status(503),
                ..
            })
        ));
    }

    #[test]
    fn a_listed_seat_reads_as_get_seat_reads_it() {
        for state in [
            SeatState::Active,
            SeatState::Revoked,
            SeatState::Other("Frozen".into()),
        ] {
            assert_eq!(
                seat_outcome(&state, Some(7.0)),
                conclude(seat(state.clone())).unwrap(),
                "{state:?}"
            );
        }
    }
}
