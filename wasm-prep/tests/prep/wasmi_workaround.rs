//! A bug of wasmi 2.0.0, the engine these tests run modules on, and how the
//! tests keep clear of it.
//!
//! After an `if` whose condition is a comparison (`i64.lt_s` here), wasmi
//! 2.0.0 can get the next `select` wrong when its condition is an
//! `i32.eqz`, or an `i32.eq` or `i32.ne` with the constant 0 (see
//! [`MISCOMPILED`]). Every fuel check a prepared module makes is such an
//! `if` (`global.get; i64.const 0; i64.lt_s; if ... end`), and wasm-smith
//! guards a division with `select (i32.const 1) x (i32.eqz x)`: the fuzz
//! found prepared modules dividing by zero under wasmi, and prepared modules
//! that ran out of fuel with exactly the fuel they had used, in 18 seeds of
//! 5000..35000. The prepared code is right; wasmi's translation of it is not
//! (it fuses such a test into the comparison it translated last, and
//! apparently into a stale one). Only 2.0.0 is published, so the tests
//! rewrite what they run: each `eqz`, `eq` and `ne` as an unsigned
//! comparison that means the same and that wasmi does not fuse.
//!
//! [`wasmi_still_needs_the_workaround`] fails once a wasmi gets these right;
//! then this module can go.

use wasm_encoder::Instruction;
use wasmparser::Operator;

use crate::rewrite::{copy, rewrite_bodies};
use crate::support::{self, RunConfig};

/// `module` with `i{32,64}.eqz`, `.eq` and `.ne` written as `lt_u` and
/// `gt_u`: `x == 0` is `x <u 1`, `x == y` is `x ^ y <u 1`, `x != y` is
/// `x ^ y >u 0`.
pub fn avoid_the_bug(module: &[u8]) -> Result<Vec<u8>, String> {
    use Instruction as I;
    rewrite_bodies(module, &[], |f, op, _| {
        let instead: &[Instruction] = match op {
            Operator::I32Eqz => &[I::I32Const(1), I::I32LtU],
            Operator::I64Eqz => &[I::I64Const(1), I::I64LtU],
            Operator::I32Eq => &[I::I32Xor, I::I32Const(1), I::I32LtU],
            Operator::I64Eq => &[I::I64Xor, I::I64Const(1), I::I64LtU],
            Operator::I32Ne => &[I::I32Xor, I::I32Const(0), I::I32GtU],
            Operator::I64Ne => &[I::I64Xor, I::I64Const(0), I::I64GtU],
            _ => return copy(f, op),
        };
        for instruction in instead {
            f.instruction(instruction);
        }
        Ok(())
    })
}

/// What wasmi 2.0.0 gets wrong: `$x` is 0, so `TEST` is 1 (or 0 for `ne`),
/// and the `select` stores 1 (or 2); wasmi stores the other.
const MISCOMPILED: &str = r#"(module
  (memory (export "memory") 1)
  (global $g (mut i64) (i64.const 100))
  (func (export "_start") (local $x i32)
    (if (i64.lt_s (global.get $g) (i64.const 0)) (then))
    (i32.store (i32.const 0) (select (i32.const 1) (i32.const 2) TEST))))"#;

#[test]
fn wasmi_still_needs_the_workaround() {
    let config = RunConfig::default();
    let engine = support::engine(&config);
    let linker = support::linker(&engine);
    for (test, right) in [
        ("(i32.eqz (local.get $x))", 1),
        ("(i32.eq (local.get $x) (i32.const 0))", 1),
        ("(i32.ne (local.get $x) (i32.const 0))", 2),
        ("(i32.eqz (i32.eqz (local.get $x)))", 2),
    ] {
        let module = crate::wasm(&MISCOMPILED.replace("TEST", test));
        let unaltered = support::run_unaltered(&engine, &linker, &module, &config);
        assert_eq!(
            unaltered.memory[0],
            3 - right,
            "wasmi now gets {test} right: the workaround can go"
        );
        let run = support::run(&engine, &linker, &module, &config);
        assert_eq!(run.memory[0], right, "{test}");
    }
}
