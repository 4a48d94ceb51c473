//! How many replicas a job's tasks run on and how many must agree: the
//! rules a job request's `redundancy`, `quorum` and `max_replicas` must
//! keep, with their defaults, checked once here for the coordinator.

/// A job's replication: each task runs on `redundancy` distinct donors and
/// is decided when `quorum` of them agree byte for byte; disagreement adds
/// replicas up to `max_replicas`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    pub redundancy: u32,
    pub quorum: u32,
    pub max_replicas: u32,
}

/// Why a job's replication settings are not acceptable; the message names
/// the bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationError {
    #[error("redundancy must be between 1 and {max}, got {got}")]
    Redundancy { got: u32, max: u32 },
    #[error("quorum must be between 1 and the redundancy ({redundancy}), got {got}")]
    Quorum { got: u32, redundancy: u32 },
    #[error("max_replicas must be between the redundancy ({redundancy}) and {max}, got {got}")]
    MaxReplicas { got: u32, redundancy: u32, max: u32 },
}

impl Replication {
    /// One replica a task: nothing to compare.
    pub const SINGLE: Replication = Replication {
        redundancy: 1,
        quorum: 1,
        max_replicas: 1,
    };

    /// Replication from a request's optional fields. Defaults: redundancy 1,
    /// a majority quorum (`redundancy / 2 + 1`), and up to two extra
    /// replicas on disagreement (`redundancy + 2`, none for a single
    /// replica). `max_redundancy` bounds redundancy, and twice it bounds
    /// `max_replicas`.
    pub fn new(
        redundancy: Option<u32>,
        quorum: Option<u32>,
        max_replicas: Option<u32>,
        max_redundancy: u32,
    ) -> Result<Replication, ReplicationError> {
        let redundancy = redundancy.unwrap_or(1);
        if redundancy == 0 || redundancy > max_redundancy {
            return Err(ReplicationError::Redundancy {
                got: redundancy,
                max: max_redundancy,
            });
        }
        let quorum = quorum.unwrap_or(redundancy / 2 + 1);
        if quorum == 0 || quorum > redundancy {
            return Err(ReplicationError::Quorum {
                got: quorum,
                redundancy,
            });
        }
        let max_replicas = max_replicas.unwrap_or(if redundancy > 1 { redundancy + 2 } else { 1 });
        let cap = max_redundancy.saturating_mul(2);
        if max_replicas < redundancy || max_replicas > cap {
            return Err(ReplicationError::MaxReplicas {
                got: max_replicas,
                redundancy,
                max: cap,
            });
        }
        Ok(Replication {
            redundancy,
            quorum,
            max_replicas,
        })
    }

    /// Whether tasks are replicated (their results compared by digest).
    pub fn is_replicated(&self) -> bool {
        self.redundancy > 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_majority_and_two_spares() {
        assert_eq!(
            Replication::new(None, None, None, 16),
            Ok(Replication::SINGLE)
        );
        assert_eq!(
            Replication::new(Some(3), None, None, 16),
            Ok(Replication {
                redundancy: 3,
                quorum: 2,
                max_replicas: 5
            })
        );
        assert_eq!(
            Replication::new(Some(2), Some(2), Some(2), 16),
            Ok(Replication {
                redundancy: 2,
                quorum: 2,
                max_replicas: 2
            })
        );
    }

    #[test]
    fn out_of_bounds_settings_are_refused_with_their_bounds() {
        let error = |r, q, m| Replication::new(r, q, m, 16).unwrap_err().to_string();
        assert_eq!(
            error(Some(0), None, None),
            "redundancy must be between 1 and 16, got 0"
        );
        assert_eq!(
            error(Some(17), None, None),
            "redundancy must be between 1 and 16, got 17"
        );
        assert_eq!(
            error(Some(3), Some(4), None),
            "quorum must be between 1 and the redundancy (3), got 4"
        );
        assert_eq!(
            error(Some(3), Some(0), None),
            "quorum must be between 1 and the redundancy (3), got 0"
        );
        assert_eq!(
            error(Some(3), None, Some(2)),
            "max_replicas must be between the redundancy (3) and 32, got 2"
        );
        assert_eq!(
            error(Some(3), None, Some(33)),
            "max_replicas must be between the redundancy (3) and 32, got 33"
        );
    }
}
