//! How many run Jobs the node runs at once, and who waits for a turn. Twenty reports at 06:00
//! on a 2 GB node must not start twenty pipeline pods together; the ones over the bound wait
//! in order of slot and, within a slot, one namespace at a time (each namespace's first
//! report before any namespace's second), so one tenant's ten reports cannot starve the
//! others. Waiting never hides a slot: a report that waits past its starting deadline is
//! `Missed` as any late slot is, and says so.
//!
//! The queue is this process's memory of what it saw: each reconcile tells it whether its
//! report has a run Job going, and a report that has not been looked at for a while (deleted,
//! or its run over while this process was not leading) stops counting.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// A report, as `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReportKey {
    pub namespace: String,
    pub name: String,
}

/// Whether a report's due run may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    Go,
    /// Wait: `ahead` reports go first, `running` run Jobs take every place of `max`.
    Wait {
        ahead: usize,
        running: usize,
        max: usize,
    },
}

/// How long an entry counts without being looked at again: a waiting report is looked at
/// every few seconds, a running one at least every `ACTIVE_POLL_SECONDS` of its clock.
const STALE: Duration = Duration::from_secs(120);

/// How soon a waiting report asks again.
pub const WAIT_POLL: Duration = Duration::from_secs(3);

#[derive(Default)]
struct State {
    running: HashMap<ReportKey, Instant>,
    /// Waiting reports: the slot they wait to run and when they last asked.
    waiting: HashMap<ReportKey, (DateTime<Utc>, Instant)>,
    /// Told to go, their Job not created yet: they hold a place (reconciles run side by side,
    /// and a place granted to one must not be granted to a third meanwhile).
    granted: HashMap<ReportKey, (DateTime<Utc>, Instant)>,
    /// Runs started for each namespace and slot: the turns a namespace has had.
    served: HashMap<(String, DateTime<Utc>), usize>,
}

/// How long the turns of a slot are remembered.
const SERVED_FOR: chrono::Duration = chrono::Duration::days(2);

pub struct RunQueue {
    /// Most run Jobs at once; 0: no bound.
    max: usize,
    state: Mutex<State>,
}

impl RunQueue {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            state: Mutex::new(State::default()),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// What a reconcile saw: the report has a run Job going, or not.
    pub fn observe(&self, key: &ReportKey, running: bool, now: Instant) {
        let mut s = self.lock();
        if running {
            s.running.insert(key.clone(), now);
            s.waiting.remove(key);
            s.granted.remove(key);
        } else {
            s.running.remove(key);
        }
    }

    /// The report has a run due for `slot`: whether it may start it now. A report told to
    /// wait keeps its place while it keeps asking.
    pub fn ask(&self, key: &ReportKey, slot: DateTime<Utc>, now: Instant) -> Turn {
        if self.max == 0 {
            return Turn::Go;
        }
        let mut s = self.lock();
        s.running
            .retain(|_, seen| now.duration_since(*seen) < STALE);
        s.waiting
            .retain(|_, (_, seen)| now.duration_since(*seen) < STALE);
        s.granted
            .retain(|_, (_, seen)| now.duration_since(*seen) < STALE);
        if s.granted.contains_key(key) {
            return Turn::Go;
        }
        s.waiting.insert(key.clone(), (slot, now));
        let running = s.running.len() + s.granted.len();
        let free = self.max.saturating_sub(running);
        let slots: Vec<(ReportKey, DateTime<Utc>)> = s
            .waiting
            .iter()
            .map(|(k, (t, _))| (k.clone(), *t))
            .collect();
        let ahead = fair_order(&slots, &s.served)
            .iter()
            .position(|k| k == key)
            .unwrap_or(0);
        if ahead < free {
            s.waiting.remove(key);
            s.granted.insert(key.clone(), (slot, now));
            Turn::Go
        } else {
            Turn::Wait {
                ahead,
                running,
                max: self.max,
            }
        }
    }

    /// The report was told to go but started nothing (its Job's name is taken, the API
    /// refused): it gives its place up rather than hold it while it keeps asking.
    pub fn withdraw(&self, key: &ReportKey) {
        let mut s = self.lock();
        s.waiting.remove(key);
        s.granted.remove(key);
    }

    /// The report's run Job was created: it counts as running from now, and its namespace
    /// has had a turn at its slot.
    pub fn started(&self, key: &ReportKey, now: Instant) {
        let mut s = self.lock();
        let taken = s.granted.remove(key).or_else(|| s.waiting.remove(key));
        if let Some((slot, _)) = taken {
            *s.served.entry((key.namespace.clone(), slot)).or_default() += 1;
            s.served.retain(|(_, t), _| *t > slot - SERVED_FOR);
        }
        s.running.insert(key.clone(), now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The order waiting reports start in: earlier slots first; within a slot, round-robin over
/// namespaces (each one's reports by name), counting the turns each namespace has had at that
/// slot already, namespaces by name.
pub fn fair_order(
    waiting: &[(ReportKey, DateTime<Utc>)],
    served: &HashMap<(String, DateTime<Utc>), usize>,
) -> Vec<ReportKey> {
    let mut by_slot_ns: BTreeMap<(DateTime<Utc>, &str), Vec<&ReportKey>> = BTreeMap::new();
    for (key, slot) in waiting {
        by_slot_ns
            .entry((*slot, key.namespace.as_str()))
            .or_default()
            .push(key);
    }
    let mut ranked: Vec<(DateTime<Utc>, usize, &str, &ReportKey)> = Vec::new();
    for ((slot, ns), mut keys) in by_slot_ns {
        keys.sort();
        let going = served.get(&(ns.to_string(), slot)).copied().unwrap_or(0);
        for (rank, key) in keys.into_iter().enumerate() {
            ranked.push((slot, going + rank, ns, key));
        }
    }
    ranked.sort();
    ranked.into_iter().map(|(_, _, _, k)| k.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, name: &str) -> ReportKey {
        ReportKey {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    fn at(h: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-11-24T{h:02}:00:00Z"))
            .unwrap()
            .to_utc()
    }

    #[test]
    fn one_tenants_many_reports_take_turns_with_the_others() {
        let mut waiting: Vec<(ReportKey, DateTime<Utc>)> = (0..10)
            .map(|i| (key("big", &format!("r{i}")), at(22)))
            .collect();
        waiting.push((key("small", "a"), at(22)));
        waiting.push((key("other", "x"), at(22)));
        waiting.push((key("late", "z"), at(23)));
        let order = fair_order(
            &waiting,
            &HashMap::from([(("small".to_string(), at(22)), 1)]),
        );
        let names: Vec<String> = order
            .iter()
            .map(|k| format!("{}/{}", k.namespace, k.name))
            .collect();
        // small has had a turn at this slot already: its next waits behind the others' first.
        assert_eq!(&names[..4], ["big/r0", "other/x", "big/r1", "small/a"]);
        assert_eq!(names.last().unwrap(), "late/z", "a later slot waits");
    }

    #[test]
    fn the_bound_holds_and_frees_as_runs_end() {
        let q = RunQueue::new(2);
        let now = Instant::now();
        let slot = at(22);
        assert_eq!(q.ask(&key("a", "1"), slot, now), Turn::Go);
        q.started(&key("a", "1"), now);
        assert_eq!(q.ask(&key("a", "2"), slot, now), Turn::Go);
        q.started(&key("a", "2"), now);
        assert_eq!(
            q.ask(&key("b", "1"), slot, now),
            Turn::Wait {
                ahead: 0,
                running: 2,
                max: 2
            }
        );
        assert!(matches!(
            q.ask(&key("a", "3"), slot, now),
            Turn::Wait { ahead: 1, .. }
        ));
        q.observe(&key("a", "1"), false, now);
        assert!(
            matches!(q.ask(&key("a", "3"), slot, now), Turn::Wait { .. }),
            "b/1 is first"
        );
        assert_eq!(q.ask(&key("b", "1"), slot, now), Turn::Go);
        // Told to go, it could not start (a name conflict): its place goes to the next.
        q.withdraw(&key("b", "1"));
        assert_eq!(q.ask(&key("a", "3"), slot, now), Turn::Go);
    }

    /// Reconciles run side by side: a place granted and not yet taken (its Job being created)
    /// is not granted to a third report meanwhile.
    #[test]
    fn a_place_granted_is_held_until_its_job_is_made() {
        let q = RunQueue::new(2);
        let now = Instant::now();
        let slot = at(22);
        assert_eq!(q.ask(&key("a", "1"), slot, now), Turn::Go);
        assert_eq!(q.ask(&key("a", "2"), slot, now), Turn::Go);
        assert!(matches!(
            q.ask(&key("b", "1"), slot, now),
            Turn::Wait { running: 2, .. }
        ));
        // Asked again before its Job is made, a granted report keeps its place.
        assert_eq!(q.ask(&key("a", "1"), slot, now), Turn::Go);
        q.started(&key("a", "1"), now);
        q.withdraw(&key("a", "2"));
        assert_eq!(q.ask(&key("b", "1"), slot, now), Turn::Go);
    }

    /// A namespace whose run is over has still had its turn at that slot: the next place
    /// goes to a namespace that has not, whatever the names.
    #[test]
    fn turns_count_runs_started_not_runs_going() {
        let q = RunQueue::new(1);
        let now = Instant::now();
        let slot = at(22);
        assert_eq!(q.ask(&key("a", "1"), slot, now), Turn::Go);
        q.started(&key("a", "1"), now);
        assert!(matches!(
            q.ask(&key("a", "2"), slot, now),
            Turn::Wait { .. }
        ));
        assert!(matches!(
            q.ask(&key("z", "1"), slot, now),
            Turn::Wait { .. }
        ));
        q.observe(&key("a", "1"), false, now);
        assert!(matches!(
            q.ask(&key("a", "2"), slot, now),
            Turn::Wait { ahead: 1, .. }
        ));
        assert_eq!(q.ask(&key("z", "1"), slot, now), Turn::Go);
    }

    #[test]
    fn no_bound_and_stale_entries_do_not_hold_places() {
        assert_eq!(
            RunQueue::new(0).ask(&key("a", "1"), at(22), Instant::now()),
            Turn::Go
        );
        let q = RunQueue::new(1);
        let then = Instant::now();
        q.started(&key("gone", "1"), then);
        let later = then + STALE + Duration::from_secs(1);
        assert_eq!(q.ask(&key("a", "1"), at(22), later), Turn::Go);
    }
}
