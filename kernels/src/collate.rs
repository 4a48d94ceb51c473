//! Folding task outputs into a job's result as they arrive: a sum for primes
//! and montecarlo-pi, a sorted list for hashsearch, an image for mandelbrot,
//! and for a wasm job how its tasks ended (each task's stdout stays in the
//! store; a live job keeps only counts and its first failures, an export
//! collator one line a task). The collator refuses to take a task twice, so a
//! duplicate can never count.

use serde::{Deserialize, Serialize};

use crate::ContentDigest;
use crate::output::{OutputError, TaskOutput};
use crate::spec::{KernelSpec, TaskDomain};
use crate::wasm::{Trap, WasmOutcome};

/// The failures a wasm job's summary names, at most.
pub const FAILURES_SHOWN: usize = 5;

/// One task of a wasm job, as its export lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasmTaskResult {
    pub task: u32,
    /// The task's name: its input file's name, or its line number.
    pub name: String,
    pub exit_code: i32,
    pub fuel_used: u64,
    /// The SHA-256 of its stdout.
    pub output_sha256: ContentDigest,
    pub output_bytes: u64,
    pub trap: Option<Trap>,
    /// Its stderr as text (invalid UTF-8 replaced).
    pub stderr: String,
}

/// A failed task of a wasm job, as its status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasmFailure {
    pub task: u32,
    pub exit_code: i32,
    pub trap: Option<Trap>,
    pub stderr: String,
}

impl WasmTaskResult {
    fn of(task: u32, outcome: &WasmOutcome) -> WasmTaskResult {
        WasmTaskResult {
            task,
            name: task.to_string(),
            exit_code: outcome.exit_code,
            fuel_used: outcome.fuel_used,
            output_sha256: ContentDigest::of(&outcome.stdout),
            output_bytes: outcome.stdout.len() as u64,
            trap: outcome.trap,
            stderr: String::from_utf8_lossy(&outcome.stderr).into_owned(),
        }
    }
}

/// A job's result, whole or so far. Serialises to the documented JSON:
/// `{"count"}`, `{"inside", "samples", "estimate"}`, `{"nonces"}` or
/// `{"width", "height", "max_iter", "iterations"}` (the variants have no
/// field name in common, so the JSON also reads back unambiguously).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JobResult {
    Primes {
        count: u64,
    },
    MontecarloPi {
        inside: u64,
        samples: u64,
        estimate: f64,
    },
    Hashsearch {
        nonces: Vec<u64>,
    },
    Mandelbrot {
        width: u32,
        height: u32,
        max_iter: u32,
        iterations: Vec<u32>,
    },
    /// A wasm job: one line a task, in task order. (Each task's stdout is
    /// its own download.)
    Wasm {
        tasks: Vec<WasmTaskResult>,
    },
}

/// A job's result in brief, as the status object carries it: the result
/// itself, except that an image is only its dimensions and pixel count
/// (`{"width", "height", "max_iter", "pixels"}`; the pixels come from the
/// results export). Reads back from its JSON like [`JobResult`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ResultSummary {
    Primes {
        count: u64,
    },
    MontecarloPi {
        inside: u64,
        samples: u64,
        estimate: f64,
    },
    Hashsearch {
        nonces: Vec<u64>,
    },
    Mandelbrot {
        width: u32,
        height: u32,
        max_iter: u32,
        pixels: u64,
    },
    /// A wasm job: how many tasks failed (a trap or a non-zero exit code),
    /// the fuel all its tasks used, and the first few failures.
    Wasm {
        tasks_failed: u32,
        fuel_used: u64,
        failures: Vec<WasmFailure>,
    },
}

#[derive(Debug, Clone)]
enum Accumulator {
    Count(u64),
    Samples {
        inside: u64,
        samples: u64,
    },
    Nonces(Vec<u64>),
    /// Escape counts, row-major, with the image's shape.
    Image {
        counts: Vec<u32>,
        width: u32,
        height: u32,
        max_iter: u32,
    },
    Wasm {
        failed: u32,
        fuel_used: u64,
        /// The failures with the lowest task numbers, at most
        /// [`FAILURES_SHOWN`], ascending.
        failures: Vec<WasmFailure>,
        /// One line a task, for an export; `None` in a live job.
        lines: Option<Vec<Option<WasmTaskResult>>>,
    },
}

#[derive(Debug, Clone)]
pub struct Collator {
    spec: KernelSpec,
    tasks: u32,
    collated: Vec<u64>,
    collated_count: u32,
    acc: Accumulator,
}

impl Collator {
    /// A collator for a validated spec, as a live job keeps it.
    pub fn new(spec: KernelSpec, tasks: u32) -> Collator {
        Collator::with(spec, tasks, false)
    }

    /// A collator whose [`Collator::result`] lists a wasm job task by task
    /// (for an export; a live job need not hold that).
    pub fn for_export(spec: KernelSpec, tasks: u32) -> Collator {
        Collator::with(spec, tasks, true)
    }

    fn with(spec: KernelSpec, tasks: u32, lines: bool) -> Collator {
        let acc = match &spec {
            KernelSpec::Wasm(_) => Accumulator::Wasm {
                failed: 0,
                fuel_used: 0,
                failures: Vec::new(),
                lines: lines.then(|| vec![None; tasks as usize]),
            },
            KernelSpec::Primes(_) => Accumulator::Count(0),
            KernelSpec::MontecarloPi(_) => Accumulator::Samples {
                inside: 0,
                samples: 0,
            },
            KernelSpec::Hashsearch(_) => Accumulator::Nonces(Vec::new()),
            KernelSpec::Mandelbrot(p) => Accumulator::Image {
                counts: vec![0; p.width as usize * p.height as usize],
                width: p.width,
                height: p.height,
                max_iter: p.max_iter,
            },
        };
        Collator {
            spec,
            tasks,
            collated: vec![0; (tasks as usize).div_ceil(64)],
            collated_count: 0,
            acc,
        }
    }

    pub fn spec(&self) -> &KernelSpec {
        &self.spec
    }

    /// Tasks folded in so far.
    pub fn collated(&self) -> u32 {
        self.collated_count
    }

    pub fn is_complete(&self) -> bool {
        self.collated_count == self.tasks
    }

    pub fn contains(&self, index: u32) -> bool {
        index < self.tasks && self.collated[index as usize / 64] & (1 << (index % 64)) != 0
    }

    /// Folds in task `index`'s output after checking it fits the task.
    pub fn add(&mut self, index: u32, output: &TaskOutput) -> Result<(), OutputError> {
        output.check(&self.spec, self.tasks, index)?;
        if self.contains(index) {
            return Err(OutputError::AlreadyCollated(index));
        }
        match (&mut self.acc, output) {
            (Accumulator::Count(sum), TaskOutput::Count(n)) => *sum += n,
            (
                Accumulator::Samples { inside, samples },
                TaskOutput::Samples {
                    inside: i,
                    samples: s,
                },
            ) => {
                *inside += i;
                *samples += s;
            }
            (Accumulator::Nonces(all), TaskOutput::Nonces(found)) => {
                // Outputs arrive in any order; keep the list sorted as we go.
                let at = all.partition_point(|&n| n < found.first().copied().unwrap_or(0));
                all.splice(at..at, found.iter().copied());
            }
            (Accumulator::Image { counts: image, .. }, TaskOutput::Iterations(counts)) => {
                let (KernelSpec::Mandelbrot(p), TaskDomain::Rows { first, .. }) =
                    (&self.spec, self.spec.task(self.tasks, index))
                else {
                    unreachable!("checked above: a mandelbrot output for a mandelbrot job")
                };
                let offset = first as usize * p.width as usize;
                image[offset..offset + counts.len()].copy_from_slice(counts);
            }
            (
                Accumulator::Wasm {
                    failed,
                    fuel_used,
                    failures,
                    lines,
                },
                TaskOutput::Wasm(outcome),
            ) => {
                *fuel_used += outcome.fuel_used;
                if !outcome.succeeded() {
                    *failed += 1;
                    note_failure(failures, index, outcome);
                }
                if let Some(lines) = lines {
                    lines[index as usize] = Some(WasmTaskResult::of(index, outcome));
                }
            }
            _ => unreachable!("check() rejects outputs of another kernel"),
        }
        self.collated[index as usize / 64] |= 1 << (index % 64);
        self.collated_count += 1;
        Ok(())
    }

    /// Replaces a collated task's output with a corrected one (a re-check
    /// found the first answer wrong).
    pub fn replace(
        &mut self,
        index: u32,
        old: &TaskOutput,
        new: &TaskOutput,
    ) -> Result<(), OutputError> {
        new.check(&self.spec, self.tasks, index)?;
        if !self.contains(index) {
            return self.add(index, new);
        }
        match (&mut self.acc, old, new) {
            (Accumulator::Count(sum), TaskOutput::Count(old), TaskOutput::Count(new)) => {
                *sum = *sum - old + new;
            }
            (
                Accumulator::Samples { inside, samples },
                TaskOutput::Samples {
                    inside: old_inside,
                    samples: old_samples,
                },
                TaskOutput::Samples {
                    inside: new_inside,
                    samples: new_samples,
                },
            ) => {
                *inside = *inside - old_inside + new_inside;
                *samples = *samples - old_samples + new_samples;
            }
            (Accumulator::Nonces(all), _, TaskOutput::Nonces(found)) => {
                // Every nonce of the task lies in its range: drop the range, insert the new list.
                let TaskDomain::Range { start, end } = self.spec.task(self.tasks, index) else {
                    unreachable!("hashsearch tasks are ranges")
                };
                let from = all.partition_point(|&n| n < start);
                let to = all.partition_point(|&n| n < end);
                all.splice(from..to, found.iter().copied());
            }
            (Accumulator::Image { counts: image, .. }, _, TaskOutput::Iterations(counts)) => {
                let (KernelSpec::Mandelbrot(p), TaskDomain::Rows { first, .. }) =
                    (&self.spec, self.spec.task(self.tasks, index))
                else {
                    unreachable!("checked above: a mandelbrot output for a mandelbrot job")
                };
                let offset = first as usize * p.width as usize;
                image[offset..offset + counts.len()].copy_from_slice(counts);
            }
            (
                Accumulator::Wasm {
                    failed,
                    fuel_used,
                    failures,
                    lines,
                },
                TaskOutput::Wasm(old),
                TaskOutput::Wasm(new),
            ) => {
                *fuel_used = *fuel_used - old.fuel_used + new.fuel_used;
                failures.retain(|f| f.task != index);
                if !old.succeeded() {
                    *failed -= 1;
                }
                if !new.succeeded() {
                    *failed += 1;
                    note_failure(failures, index, new);
                }
                if let Some(lines) = lines {
                    lines[index as usize] = Some(WasmTaskResult::of(index, new));
                }
            }
            _ => {
                return Err(OutputError::Implausible {
                    task: index,
                    reason: "the replaced output is of another kind".into(),
                });
            }
        }
        Ok(())
    }

    /// The result over the tasks collated so far; the job's result once
    /// [`Collator::is_complete`].
    pub fn result(&self) -> JobResult {
        match &self.acc {
            Accumulator::Count(count) => JobResult::Primes { count: *count },
            &Accumulator::Samples { inside, samples } => JobResult::MontecarloPi {
                inside,
                samples,
                estimate: estimate(inside, samples),
            },
            Accumulator::Nonces(nonces) => JobResult::Hashsearch {
                nonces: nonces.clone(),
            },
            Accumulator::Image {
                counts,
                width,
                height,
                max_iter,
            } => JobResult::Mandelbrot {
                width: *width,
                height: *height,
                max_iter: *max_iter,
                iterations: counts.clone(),
            },
            Accumulator::Wasm { lines, .. } => JobResult::Wasm {
                tasks: lines.iter().flatten().flatten().cloned().collect(),
            },
        }
    }

    /// The image so far, for a mandelbrot job (rows of uncollated tasks are 0).
    pub fn image(&self) -> Option<&[u32]> {
        match &self.acc {
            Accumulator::Image { counts, .. } => Some(counts),
            _ => None,
        }
    }

    /// How many tasks the job has.
    pub fn tasks(&self) -> u32 {
        self.tasks
    }

    /// The result so far in brief, without cloning a large image.
    pub fn summary(&self) -> ResultSummary {
        match &self.acc {
            Accumulator::Count(count) => ResultSummary::Primes { count: *count },
            &Accumulator::Samples { inside, samples } => ResultSummary::MontecarloPi {
                inside,
                samples,
                estimate: estimate(inside, samples),
            },
            Accumulator::Nonces(nonces) => ResultSummary::Hashsearch {
                nonces: nonces.clone(),
            },
            Accumulator::Image {
                counts,
                width,
                height,
                max_iter,
            } => ResultSummary::Mandelbrot {
                width: *width,
                height: *height,
                max_iter: *max_iter,
                pixels: counts.len() as u64,
            },
            Accumulator::Wasm {
                failed,
                fuel_used,
                failures,
                ..
            } => ResultSummary::Wasm {
                tasks_failed: *failed,
                fuel_used: *fuel_used,
                failures: failures.clone(),
            },
        }
    }
}

/// Keeps the failures with the lowest task numbers, at most
/// [`FAILURES_SHOWN`], so the list does not depend on arrival order.
fn note_failure(failures: &mut Vec<WasmFailure>, task: u32, outcome: &WasmOutcome) {
    let at = failures.partition_point(|f| f.task < task);
    if at >= FAILURES_SHOWN {
        return;
    }
    let mut stderr = String::from_utf8_lossy(&outcome.stderr).into_owned();
    if stderr.len() > 200 {
        let mut end = 200;
        while !stderr.is_char_boundary(end) {
            end -= 1;
        }
        stderr.truncate(end);
        stderr.push('…');
    }
    failures.insert(
        at,
        WasmFailure {
            task,
            exit_code: outcome.exit_code,
            trap: outcome.trap,
            stderr,
        },
    );
    failures.truncate(FAILURES_SHOWN);
}

/// The montecarlo-pi estimate of pi: 4 * inside / samples (0 before any sample).
fn estimate(inside: u64, samples: u64) -> f64 {
    if samples == 0 {
        0.0
    } else {
        4.0 * inside as f64 / samples as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{HashsearchParams, MandelbrotParams, PrimesParams};

    #[test]
    fn sums_arrive_in_any_order_and_duplicates_are_refused() {
        let spec = KernelSpec::Primes(PrimesParams { start: 0, end: 100 });
        let mut c = Collator::new(spec, 4);
        for (i, n) in [(2, 4), (0, 10), (3, 4), (1, 7)] {
            c.add(i, &TaskOutput::Count(n)).unwrap();
        }
        assert!(c.is_complete());
        assert_eq!(
            c.add(2, &TaskOutput::Count(4)),
            Err(OutputError::AlreadyCollated(2))
        );
        assert_eq!(c.result(), JobResult::Primes { count: 25 });
    }

    #[test]
    fn nonce_lists_stay_sorted() {
        let spec = KernelSpec::Hashsearch(HashsearchParams {
            prefix: String::new(),
            difficulty: 1,
            start: 0,
            end: 30,
        });
        let mut c = Collator::new(spec, 3);
        c.add(2, &TaskOutput::Nonces(vec![21, 25])).unwrap();
        c.add(0, &TaskOutput::Nonces(vec![1, 9])).unwrap();
        c.add(1, &TaskOutput::Nonces(vec![])).unwrap();
        assert_eq!(
            c.result(),
            JobResult::Hashsearch {
                nonces: vec![1, 9, 21, 25]
            }
        );
    }

    #[test]
    fn image_bands_land_at_their_rows() {
        let spec = KernelSpec::Mandelbrot(MandelbrotParams {
            width: 2,
            height: 3,
            x_min: 0.0,
            x_max: 1.0,
            y_min: 0.0,
            y_max: 1.0,
            max_iter: 9,
        });
        let mut c = Collator::new(spec, 2);
        c.add(1, &TaskOutput::Iterations(vec![3, 4, 5, 6])).unwrap();
        assert!(!c.is_complete());
        c.add(0, &TaskOutput::Iterations(vec![1, 2])).unwrap();
        let JobResult::Mandelbrot {
            iterations,
            width,
            height,
            ..
        } = c.result()
        else {
            panic!()
        };
        assert_eq!((width, height), (2, 3));
        assert_eq!(iterations, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(
            serde_json::to_value(c.result()).unwrap()["iterations"],
            serde_json::json!([1, 2, 3, 4, 5, 6])
        );
    }

    #[test]
    fn replacing_a_wrong_answer_corrects_the_result() {
        let spec = KernelSpec::Primes(PrimesParams { start: 0, end: 100 });
        let mut c = Collator::new(spec, 2);
        c.add(0, &TaskOutput::Count(15)).unwrap();
        c.add(1, &TaskOutput::Count(40)).unwrap();
        c.replace(1, &TaskOutput::Count(40), &TaskOutput::Count(10))
            .unwrap();
        assert_eq!(c.result(), JobResult::Primes { count: 25 });

        let spec = KernelSpec::Hashsearch(HashsearchParams {
            prefix: String::new(),
            difficulty: 1,
            start: 0,
            end: 30,
        });
        let mut c = Collator::new(spec, 3);
        c.add(0, &TaskOutput::Nonces(vec![1, 9])).unwrap();
        c.add(1, &TaskOutput::Nonces(vec![11, 12, 13])).unwrap();
        c.add(2, &TaskOutput::Nonces(vec![25])).unwrap();
        c.replace(
            1,
            &TaskOutput::Nonces(vec![11, 12, 13]),
            &TaskOutput::Nonces(vec![15]),
        )
        .unwrap();
        assert_eq!(
            c.result(),
            JobResult::Hashsearch {
                nonces: vec![1, 9, 15, 25]
            }
        );
        assert_eq!(c.collated(), 3);
    }

    #[test]
    fn the_wrong_kind_of_output_is_refused() {
        let spec = KernelSpec::Primes(PrimesParams { start: 0, end: 100 });
        let mut c = Collator::new(spec, 1);
        assert!(c.add(0, &TaskOutput::Nonces(vec![])).is_err());
        assert_eq!(c.collated(), 0);
    }

    fn wasm_spec() -> KernelSpec {
        KernelSpec::Wasm(crate::wasm::WasmParams {
            module: ContentDigest::of(b"prepared"),
            source: ContentDigest::of(b"source"),
            name: "k.wasm".into(),
            args: vec![],
            fuel: 1_000,
            memory_mib: 16,
            stdout_bytes: 100,
            stderr_bytes: 100,
            seed: 1,
            description: None,
            files: Vec::new(),
        })
    }

    fn outcome(exit_code: i32, trap: Option<Trap>, fuel_used: u64) -> TaskOutput {
        TaskOutput::Wasm(WasmOutcome {
            trap,
            exit_code,
            fuel_used,
            stdout: format!("out {exit_code}").into_bytes(),
            stderr: b"err".to_vec(),
        })
    }

    #[test]
    fn a_live_wasm_job_counts_failures_and_fuel_and_names_the_first_failures() {
        let mut c = Collator::new(wasm_spec(), 10);
        // Out of order: the summary must not depend on arrival order.
        for task in (0..10).rev() {
            let output = if task % 2 == 1 {
                outcome(1, None, 10)
            } else if task == 4 {
                outcome(0, Some(Trap::OutOfFuel), 1_000)
            } else {
                outcome(0, None, 10)
            };
            c.add(task, &output).unwrap();
        }
        let ResultSummary::Wasm {
            tasks_failed,
            fuel_used,
            failures,
        } = c.summary()
        else {
            panic!("a wasm summary")
        };
        assert_eq!(tasks_failed, 6);
        assert_eq!(fuel_used, 9 * 10 + 1_000);
        let shown: Vec<u32> = failures.iter().map(|f| f.task).collect();
        assert_eq!(shown, vec![1, 3, 4, 5, 7]);
        assert_eq!(failures[2].trap, Some(Trap::OutOfFuel));
        assert_eq!(
            c.result(),
            JobResult::Wasm { tasks: vec![] },
            "a live job keeps no lines"
        );
        // A re-check turns a failure into a success.
        c.replace(1, &outcome(1, None, 10), &outcome(0, None, 20))
            .unwrap();
        let ResultSummary::Wasm {
            tasks_failed,
            fuel_used,
            failures,
        } = c.summary()
        else {
            panic!("a wasm summary")
        };
        assert_eq!((tasks_failed, fuel_used), (5, 9 * 10 + 1_000 + 10));
        assert!(failures.iter().all(|f| f.task != 1));
    }

    #[test]
    fn an_export_lists_every_wasm_task_in_order() {
        let mut c = Collator::for_export(wasm_spec(), 3);
        c.add(2, &outcome(0, None, 5)).unwrap();
        c.add(0, &outcome(3, None, 7)).unwrap();
        assert!(c.add(0, &outcome(0, None, 7)).is_err(), "twice");
        c.add(1, &outcome(0, Some(Trap::Wasm), 9)).unwrap();
        let JobResult::Wasm { tasks } = c.result() else {
            panic!("a wasm result")
        };
        assert_eq!(tasks.iter().map(|t| t.task).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(tasks[0].exit_code, 3);
        assert_eq!(tasks[0].output_sha256, ContentDigest::of(b"out 3"));
        assert_eq!(tasks[0].output_bytes, 5);
        assert_eq!(tasks[1].trap, Some(Trap::Wasm));
        assert_eq!(tasks[2].stderr, "err");
        // An outcome over the job's limits does not fit its task.
        let mut big = Collator::new(wasm_spec(), 1);
        assert!(big.add(0, &outcome(0, None, 1_001)).is_err());
    }
}
