//! Which finished run Jobs (and their plan ConfigMaps, which share their names) a report
//! keeps: the newest `history.succeeded` that succeeded and `history.failed` that failed.
//! Active Jobs are never pruned.

use chrono::{DateTime, Utc};

use super::status::JobState;
use crate::api::HistorySpec;

/// A run Job as the pruning decision needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishedJob {
    pub name: String,
    pub state: JobState,
    pub created: DateTime<Utc>,
}

/// The names of the Jobs to delete, oldest first.
pub fn to_prune(jobs: &[FinishedJob], history: &HistorySpec) -> Vec<String> {
    let mut out = Vec::new();
    for (state, keep) in [
        (JobState::Succeeded, history.succeeded),
        (JobState::Failed, history.failed),
    ] {
        let mut of_state: Vec<&FinishedJob> = jobs.iter().filter(|j| j.state == state).collect();
        // Newest first; the name breaks ties so the decision is the same on every pass.
        of_state.sort_by(|a, b| b.created.cmp(&a.created).then(b.name.cmp(&a.name)));
        out.extend(
            of_state
                .into_iter()
                .skip(keep as usize)
                .map(|j| (j.created, j.name.clone())),
        );
    }
    out.sort();
    out.into_iter().map(|(_, name)| name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, state: JobState, day: u32) -> FinishedJob {
        FinishedJob {
            name: name.to_string(),
            state,
            created: DateTime::parse_from_rfc3339(&format!("2026-11-{day:02}T22:00:00Z"))
                .unwrap()
                .to_utc(),
        }
    }

    #[test]
    fn keeps_the_newest_of_each_outcome_and_every_active_job() {
        let jobs = vec![
            job("r-20261118", JobState::Succeeded, 17),
            job("r-20261119", JobState::Failed, 18),
            job("r-20261120", JobState::Succeeded, 19),
            job("r-20261121", JobState::Succeeded, 20),
            job("r-20261122", JobState::Failed, 21),
            job("r-20261123", JobState::Active, 22),
        ];
        let history = HistorySpec {
            succeeded: 2,
            failed: 1,
        };
        assert_eq!(to_prune(&jobs, &history), ["r-20261118", "r-20261119"]);
        let none = HistorySpec {
            succeeded: 0,
            failed: 0,
        };
        assert_eq!(to_prune(&jobs, &none).len(), 5);
        let all = HistorySpec {
            succeeded: 100,
            failed: 100,
        };
        assert!(to_prune(&jobs, &all).is_empty());
    }
}
