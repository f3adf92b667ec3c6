//! An execution's lifecycle: the events that move it and the one function per view that says
//! where each event may lead. Both the orchestrator (over [`ComputeStateType`]) and the compute
//! node (over its local states, which add `Running` and `Publishing`) decide every state change
//! here, instead of each call site listing the states it accepts. A duplicated or late message
//! shows up as an [`IllegalTransition`], which the caller logs and ignores.

use std::fmt;

use crate::ComputeStateType;

/// Something that happens to an execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecutionEvent {
    /// The orchestrator asked the node for a bid.
    Asked,
    /// The node answered the ask.
    NodeBid {
        /// Whether it bid.
        accepted: bool,
    },
    /// The orchestrator accepted the node's bid.
    BidAccepted,
    /// The orchestrator turned the bid down.
    BidRejected,
    /// The node started it (inputs prepared, engine running).
    Started,
    /// The node is publishing its results.
    Publishing,
    /// It ran to the end, whatever the exit code.
    Completed,
    /// It could not run to the end (on the node, a timeout, its node gone).
    Failed,
    /// It was stopped on request.
    Cancelled,
    /// Its node restarted and has no record of it.
    Lost,
}

/// An event that cannot happen in a state: a duplicate, a late message, or a bug.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IllegalTransition {
    /// The state it was in, by name.
    pub from: &'static str,
    /// What happened.
    pub event: ExecutionEvent,
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} cannot happen to an execution in state {}", self.event, self.from)
    }
}

impl std::error::Error for IllegalTransition {}

impl ComputeStateType {
    /// The state `event` leads to from this one, as the orchestrator tracks executions
    /// (`Started` and `Publishing` are the node's own phases: it stays `BidAccepted`).
    pub fn apply(self, event: ExecutionEvent) -> Result<Self, IllegalTransition> {
        use ComputeStateType as S;
        use ExecutionEvent as E;
        let live = !self.is_terminal() && self != S::Undefined;
        let next = match (self, event) {
            (S::New, E::Asked) => S::AskForBid,
            (S::New | S::AskForBid, E::NodeBid { accepted: true }) => S::AskForBidAccepted,
            (S::New | S::AskForBid, E::NodeBid { accepted: false }) => S::AskForBidRejected,
            (S::AskForBidAccepted, E::BidAccepted) => S::BidAccepted,
            (S::AskForBidAccepted, E::BidRejected) => S::BidRejected,
            (S::BidAccepted, E::Started | E::Publishing) => S::BidAccepted,
            (_, E::Completed) if live => S::Completed,
            (_, E::Failed) if live => S::Failed,
            (_, E::Cancelled) if live => S::Cancelled,
            (S::AskForBidAccepted | S::BidAccepted, E::Lost) => S::Failed,
            _ => return Err(IllegalTransition { from: self.name(), event }),
        };
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ComputeStateType as S;
    use ExecutionEvent as E;

    #[test]
    fn the_happy_path() {
        let mut s = S::New;
        for e in [E::Asked, E::NodeBid { accepted: true }, E::BidAccepted, E::Started, E::Publishing, E::Completed] {
            s = s.apply(e).expect("legal");
        }
        assert_eq!(s, S::Completed);
    }

    #[test]
    fn terminal_states_accept_nothing_and_duplicates_are_refused() {
        for t in [S::AskForBidRejected, S::BidRejected, S::Completed, S::Failed, S::Cancelled] {
            for e in [E::Asked, E::NodeBid { accepted: true }, E::BidAccepted, E::Completed, E::Failed, E::Lost] {
                assert!(t.apply(e).is_err(), "{t:?} + {e:?}");
            }
        }
        // A bid reported twice, an acceptance for a bid never made.
        assert!(S::AskForBidAccepted.apply(E::NodeBid { accepted: true }).is_err());
        assert!(S::AskForBid.apply(E::BidAccepted).is_err());
        let e = S::Completed.apply(E::Failed).expect_err("late failure");
        assert_eq!(e.to_string(), "Failed cannot happen to an execution in state Completed");
    }

    #[test]
    fn stops_and_losses() {
        for s in [S::New, S::AskForBid, S::AskForBidAccepted, S::BidAccepted] {
            assert_eq!(s.apply(E::Cancelled), Ok(S::Cancelled));
            assert_eq!(s.apply(E::Failed), Ok(S::Failed));
        }
        assert_eq!(S::BidAccepted.apply(E::Lost), Ok(S::Failed));
        assert_eq!(S::AskForBidAccepted.apply(E::Lost), Ok(S::Failed));
        assert!(S::AskForBid.apply(E::Lost).is_err(), "an unanswered ask is asked again, not failed");
        assert_eq!(S::AskForBidAccepted.apply(E::BidRejected), Ok(S::BidRejected));
    }
}
