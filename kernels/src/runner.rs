//! Running one task of a job: the single entry point workers call, holding the
//! caches that make consecutive small tasks cheap.

use crate::hashsearch;
use crate::mandelbrot;
use crate::montecarlo;
use crate::output::TaskOutput;
use crate::primes::{self, BasePrimes};
use crate::spec::{KernelSpec, TaskDomain};

/// Runs tasks. Keep one per thread and reuse it: it caches base primes.
#[derive(Debug, Default)]
pub struct TaskRunner {
    base_primes: BasePrimes,
}

impl TaskRunner {
    pub fn new() -> TaskRunner {
        TaskRunner::default()
    }

    /// Computes task `index` of a `tasks`-task job of a built-in kernel. The
    /// spec must be valid ([`KernelSpec::validate`]) and `index < tasks`. A
    /// wasm task is not this runner's: it needs a WebAssembly engine, its
    /// module and its input.
    pub fn run(
        &mut self,
        spec: &KernelSpec,
        tasks: u32,
        index: u32,
    ) -> Result<TaskOutput, NotBuiltIn> {
        Ok(match (spec, spec.task(tasks, index)) {
            (KernelSpec::Wasm(_), _) => return Err(NotBuiltIn),
            (KernelSpec::Primes(_), TaskDomain::Range { start, end }) => {
                TaskOutput::Count(primes::count_primes(start, end, &mut self.base_primes))
            }
            (KernelSpec::MontecarloPi(p), TaskDomain::Range { start, end }) => {
                TaskOutput::Samples {
                    inside: montecarlo::count_inside(p.seed, start, end - start),
                    samples: end - start,
                }
            }
            (KernelSpec::Hashsearch(p), TaskDomain::Range { start, end }) => TaskOutput::Nonces(
                hashsearch::search(p.prefix.as_bytes(), p.difficulty, start, end),
            ),
            (KernelSpec::Mandelbrot(p), TaskDomain::Rows { first, count }) => {
                let mut counts = Vec::new();
                mandelbrot::render_rows(p, first, count, &mut counts);
                TaskOutput::Iterations(counts)
            }
            _ => unreachable!("each kernel splits into its own kind of domain"),
        })
    }
}

/// A task [`TaskRunner`] cannot run: a user's WebAssembly kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a wasm task runs in a WebAssembly engine, not in the built-in kernels")]
pub struct NotBuiltIn;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collate::{Collator, JobResult};
    use crate::spec::{MonteCarloParams, PrimesParams};

    fn run_job(spec: &KernelSpec, tasks: u32) -> JobResult {
        let mut runner = TaskRunner::new();
        let mut collator = Collator::new(spec.clone(), tasks);
        // Out of order, as a grid would deliver them.
        for index in (0..tasks).rev() {
            collator
                .add(
                    index,
                    &runner.run(spec, tasks, index).expect("a built-in kernel"),
                )
                .unwrap();
        }
        assert!(collator.is_complete());
        collator.result()
    }

    #[test]
    fn a_split_primes_job_counts_pi_of_a_million() {
        let spec = KernelSpec::Primes(PrimesParams {
            start: 0,
            end: 1_000_000,
        });
        for tasks in [1, 3, 64, 1000] {
            assert_eq!(run_job(&spec, tasks), JobResult::Primes { count: 78_498 });
        }
    }

    #[test]
    fn montecarlo_gives_one_answer_whatever_the_task_count() {
        let spec = KernelSpec::MontecarloPi(MonteCarloParams {
            samples: 200_003,
            seed: 99,
        });
        let one = run_job(&spec, 1);
        for tasks in [2, 7, 1000] {
            assert_eq!(run_job(&spec, tasks), one, "{tasks} tasks");
        }
    }
}
