//! The connected workers in brief ([`WorkerSummary`]): totals, by kind, and
//! the donors doing the most. Pure: the grid hands in one row per
//! connection and each connection's rate; the summary's size does not grow
//! with the fleet.

use std::collections::HashMap;

use grid_protocol::WorkerKind;
use grid_protocol::api::{DonorFigures, KindFigures, WorkerSummary};

/// A donor's name is cut to this many characters in the summary.
const NAME_CHARS: usize = 64;

/// One worker connection's figures, as the summary needs them.
#[derive(Debug, Clone)]
pub struct WorkerRow<'a> {
    pub id: u64,
    pub donor: u64,
    pub kind: WorkerKind,
    pub threads: u32,
    pub name: Option<&'a str>,
    pub paused: bool,
    pub tasks_done: u64,
    pub fuel_used: u64,
    pub tasks_in_flight: u32,
    pub trusted: bool,
    pub quarantined: bool,
}

/// Sums `rows` up; `rates` is each connection's tasks per second (missing:
/// 0). Rows may come in any order: ties among donors go to the smaller id.
pub fn summarize(rows: &[WorkerRow<'_>], rates: &HashMap<u64, f64>) -> WorkerSummary {
    let mut summary = WorkerSummary::default();
    let mut kinds: Vec<KindFigures> = Vec::new();
    let mut donors: HashMap<u64, DonorFigures> = HashMap::new();
    // The smallest connection id seen per donor names it.
    let mut first_id: HashMap<u64, u64> = HashMap::new();
    for row in rows {
        let rate = rates.get(&row.id).copied().unwrap_or(0.0);
        summary.connections += 1;
        summary.threads += u64::from(row.threads);
        summary.paused += u64::from(row.paused);
        summary.quarantined += u64::from(row.quarantined);
        summary.tasks_in_flight += u64::from(row.tasks_in_flight);
        summary.tasks_done += row.tasks_done;
        summary.fuel_used += row.fuel_used;
        summary.rate += rate;
        let kind = match kinds.iter_mut().find(|k| k.kind == row.kind) {
            Some(kind) => kind,
            None => {
                kinds.push(KindFigures {
                    kind: row.kind,
                    connections: 0,
                    threads: 0,
                    tasks_done: 0,
                    rate: 0.0,
                });
                kinds.last_mut().expect("just pushed")
            }
        };
        kind.connections += 1;
        kind.threads += u64::from(row.threads);
        kind.tasks_done += row.tasks_done;
        kind.rate += rate;
        let donor = donors.entry(row.donor).or_insert_with(|| DonorFigures {
            donor: row.donor,
            name: None,
            kind: row.kind,
            connections: 0,
            threads: 0,
            tasks_done: 0,
            fuel_used: 0,
            tasks_in_flight: 0,
            rate: 0.0,
            trusted: row.trusted,
            quarantined: false,
        });
        let first = first_id.entry(row.donor).or_insert(row.id);
        if row.id <= *first {
            *first = row.id;
            donor.name = row.name.map(|n| n.chars().take(NAME_CHARS).collect());
            donor.kind = row.kind;
        }
        donor.connections += 1;
        donor.threads += u64::from(row.threads);
        donor.tasks_done += row.tasks_done;
        donor.fuel_used += row.fuel_used;
        donor.tasks_in_flight += u64::from(row.tasks_in_flight);
        donor.rate += rate;
        donor.trusted |= row.trusted;
        donor.quarantined |= row.quarantined;
    }
    kinds.sort_by_key(|k| k.kind != WorkerKind::Native);
    summary.by_kind = kinds;
    summary.donors = donors.len() as u64;
    summary.trusted_donors = donors.values().filter(|d| d.trusted).count() as u64;
    let mut top: Vec<DonorFigures> = donors.into_values().collect();
    let order = |a: &DonorFigures, b: &DonorFigures| {
        b.rate
            .total_cmp(&a.rate)
            .then(b.tasks_done.cmp(&a.tasks_done))
            .then(a.donor.cmp(&b.donor))
    };
    if top.len() > WorkerSummary::TOP_DONORS {
        top.select_nth_unstable_by(WorkerSummary::TOP_DONORS - 1, order);
        top.truncate(WorkerSummary::TOP_DONORS);
    }
    top.sort_by(order);
    summary.top_donors = top;
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, donor: u64, kind: WorkerKind, tasks_done: u64) -> WorkerRow<'static> {
        WorkerRow {
            id,
            donor,
            kind,
            threads: 2,
            name: Some(
                "a name that is rather long, longer than sixty-four characters, so it is cut",
            ),
            paused: id.is_multiple_of(2),
            tasks_done,
            fuel_used: 10,
            tasks_in_flight: 1,
            trusted: donor == 1,
            quarantined: false,
        }
    }

    #[test]
    fn sums_by_kind_and_by_donor_with_the_busiest_donors_first() {
        let rows = vec![
            row(3, 2, WorkerKind::Browser, 5),
            row(1, 1, WorkerKind::Native, 100),
            row(2, 1, WorkerKind::Native, 50),
            row(4, 3, WorkerKind::Browser, 7),
        ];
        let rates = HashMap::from([(1, 3.0), (2, 1.0), (3, 10.0)]);
        let summary = summarize(&rows, &rates);
        assert_eq!(
            (summary.connections, summary.donors, summary.threads),
            (4, 3, 8)
        );
        assert_eq!((summary.paused, summary.trusted_donors), (2, 1));
        assert_eq!(
            (summary.tasks_done, summary.tasks_in_flight, summary.rate),
            (162, 4, 14.0)
        );
        let kinds: Vec<_> = summary
            .by_kind
            .iter()
            .map(|k| (k.kind, k.connections, k.tasks_done, k.rate))
            .collect();
        assert_eq!(
            kinds,
            [
                (WorkerKind::Native, 2, 150, 4.0),
                (WorkerKind::Browser, 2, 12, 10.0)
            ]
        );
        let donors: Vec<_> = summary
            .top_donors
            .iter()
            .map(|d| (d.donor, d.connections, d.tasks_done, d.rate))
            .collect();
        assert_eq!(donors, [(2, 1, 5, 10.0), (1, 2, 150, 4.0), (3, 1, 7, 0.0)]);
        assert_eq!(
            summary.top_donors[0].name.as_ref().unwrap().chars().count(),
            64
        );
    }

    #[test]
    fn names_at_most_the_top_donors_however_many_there_are() {
        let rows: Vec<_> = (0..1000)
            .map(|i| row(i, i, WorkerKind::Browser, i))
            .collect();
        let summary = summarize(&rows, &HashMap::new());
        assert_eq!(summary.donors, 1000);
        let top: Vec<u64> = summary.top_donors.iter().map(|d| d.donor).collect();
        assert_eq!(top, (980..1000).rev().collect::<Vec<_>>());
    }
}
