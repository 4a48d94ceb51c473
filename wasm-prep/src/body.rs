//! One function body, validated and rewritten in a single pass over its
//! instructions: each instruction is checked against the allowed features,
//! fed to wasmparser's function validator, and copied byte for byte, with
//! the fuel charges ([`crate::fuel`]), the stack limit's bookkeeping
//! ([`crate::stack`]) and NaN canonicalization ([`crate::nan`]) around it.
//!
//! The walk is iterative (wasmparser's operator reader and validator keep
//! their control stacks on the heap; nothing here depends on nesting), and
//! its memory is bounded by the prepared function's
//! size limit, checked as it grows: the instructions of the current segment
//! are buffered until the segment ends, when its charge, now known, is
//! written before them.
//!
//! Instructions are copied as they were encoded: preparation appends
//! globals and locals after the module's own, so no index in them changes.
//! The prepared body is the submitted locals, then the scratch locals the
//! instrumentation needed (the fuel's shadow local first, then one of each
//! kind at most), then the stack prologue, then the segments, each after
//! its charge.

use wasm_encoder::{Encode, ValType};
use wasmparser::{
    FuncValidator, FunctionBody, Operator, OperatorsReader, OperatorsReaderAllocations,
    ValidatorResources,
};

use crate::error::PrepareError;
use crate::fuel::Counter;
use crate::nan::{self, Canon};
use crate::{Globals, Instrumentation, Options, features, fuel, stack};

/// The most scratch locals a function gets: the frame level, a length, a
/// grow's result, the fuel left, and one f32, f64 and v128.
pub(crate) const MAX_SCRATCH_LOCALS: u32 = 7;

/// What a body's rewrite needs to know about its module.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    /// The whole submitted module: instructions are copied from it.
    pub module: &'a [u8],
    pub globals: Globals,
    pub imported_functions: u32,
    /// Whether an imported function may be in a table, so that a
    /// `call_indirect` may call it: only if the module refers to one
    /// outside code (an element segment, an export, a global's
    /// initializer), as `ref.func` requires.
    pub imports_in_tables: bool,
    pub options: &'a Options,
}

/// Rewrites the body of function `index` (in the function index space),
/// validating it with `validator`. Returns the prepared body: its locals and
/// instructions, without the size prefix.
pub(crate) fn rewrite(
    cx: &Context<'_>,
    index: u32,
    body: &FunctionBody<'_>,
    validator: &mut FuncValidator<ValidatorResources>,
    allocs: &mut OperatorsReaderAllocations,
    counts: &mut Instrumentation,
) -> Result<Vec<u8>, PrepareError> {
    let mut locals = body.get_locals_reader()?;
    let declarations = locals.get_count();
    let declarations_start = locals.original_position();
    let mut declared: u64 = 0;
    for _ in 0..declarations {
        let offset = locals.original_position();
        let (count, ty) = locals.read()?;
        declared += u64::from(count);
        if declared > u64::from(cx.options.max_locals) {
            return Err(PrepareError::TooManyLocals {
                function: index,
                count: declared,
                limit: cx.options.max_locals,
            });
        }
        validator.define_locals(offset, count, ty)?;
    }
    let declarations_end = locals.original_position();
    let params_and_locals = validator.len_locals();

    let mut writer = Writer::new(cx, index, params_and_locals);
    let mut ops =
        OperatorsReader::new_with_allocs(locals.get_binary_reader(), std::mem::take(allocs));
    let mut max_height = 0u32;
    while !ops.eof() {
        let offset = ops.original_position();
        let op = ops.read()?;
        let end = ops.original_position();
        if let Some((proposal, name)) = features::forbidden(&op) {
            return Err(PrepareError::Unsupported {
                proposal,
                detail: format!("{name} in function {index}"),
            });
        }
        validator.op(offset, &op)?;
        max_height = max_height.max(validator.operand_stack_height());
        let bytes = cx
            .module
            .get(offset..end)
            .ok_or_else(|| internal("an instruction outside the module"))?;
        writer.instruction(&op, bytes, validator.control_stack_height())?;
    }
    ops.get_binary_reader()
        .finish_expression(&validator.visitor(ops.original_position()))?;
    ops.finish()?;
    *allocs = ops.into_allocations();

    let weight = stack::weight(params_and_locals, max_height);
    counts.max_frame_weight = counts.max_frame_weight.max(weight);
    let submitted_locals = cx
        .module
        .get(declarations_start..declarations_end)
        .ok_or_else(|| internal("locals outside the module"))?;
    writer.finish(declarations, submitted_locals, weight, counts)
}

/// The prepared function as it is written.
struct Writer<'a> {
    cx: &'a Context<'a>,
    index: u32,
    /// Charges and the segments before the current one.
    out: Vec<u8>,
    /// The current segment's instructions, and their cost.
    segment: Vec<u8>,
    cost: u64,
    /// Whether the current segment is the function's first, and whether
    /// its charge checks the fuel left: at the function's entry and loop
    /// headers ([`fuel`] rule 5).
    entry: bool,
    checked: bool,
    counter: Counter,
    /// Whether `browsergrid.fuel` has every charge so far: always with
    /// [`Counter::Global`]; with [`Counter::Shadowed`], once written back
    /// in the current segment (its charge went to the local only).
    synced: bool,
    /// The first scratch local's index, and the scratch locals' types.
    first_scratch: u32,
    scratch_types: Vec<ValType>,
    level: Option<u32>,
    length: Option<u32>,
    grown: Option<u32>,
    f32_scratch: Option<u32>,
    f64_scratch: Option<u32>,
    v128_scratch: Option<u32>,
    counts: Instrumentation,
}

impl<'a> Writer<'a> {
    fn new(cx: &'a Context<'a>, index: u32, params_and_locals: u32) -> Writer<'a> {
        // The shadow local is the first scratch local, in every function.
        let mut scratch_types = Vec::new();
        let counter = if cx.options.check_every_charge {
            Counter::Global
        } else {
            scratch_types.push(ValType::I64);
            Counter::Shadowed(params_and_locals)
        };
        Writer {
            cx,
            index,
            out: Vec::new(),
            segment: Vec::new(),
            cost: 0,
            entry: true,
            checked: true,
            counter,
            synced: counter == Counter::Global,
            first_scratch: params_and_locals,
            scratch_types,
            level: None,
            length: None,
            grown: None,
            f32_scratch: None,
            f64_scratch: None,
            v128_scratch: None,
            counts: Instrumentation::default(),
        }
    }

    /// One submitted instruction, `bytes` its encoding, with what goes
    /// around it. `height` is the number of control frames open after it.
    fn instruction(
        &mut self,
        op: &Operator<'_>,
        bytes: &[u8],
        height: u32,
    ) -> Result<(), PrepareError> {
        let globals = self.cx.globals;
        if let Some(canon) = nan::before(op) {
            let scratch = self.canon_scratch(canon);
            nan::canonicalize(&mut self.segment, canon, scratch);
            self.counts.nan_sites += 1;
        }
        match op {
            Operator::MemoryFill { .. }
            | Operator::MemoryCopy { .. }
            | Operator::MemoryInit { .. } => {
                let length = self.length_scratch();
                fuel::charge_length(
                    &mut self.segment,
                    globals,
                    self.counter,
                    length,
                    fuel::BYTES_SHIFT,
                );
                self.synced = true;
                self.counts.length_charges += 1;
            }
            Operator::TableFill { .. }
            | Operator::TableCopy { .. }
            | Operator::TableInit { .. } => {
                let length = self.length_scratch();
                fuel::charge_length(
                    &mut self.segment,
                    globals,
                    self.counter,
                    length,
                    fuel::ELEMENTS_SHIFT,
                );
                self.synced = true;
                self.counts.length_charges += 1;
            }
            Operator::MemoryGrow { .. } | Operator::TableGrow { .. } => {
                let delta = self.length_scratch();
                fuel::before_grow(&mut self.segment, delta);
            }
            _ => {}
        }

        // Imported functions are the only effects a run can show (output,
        // proc_exit): none may run once the fuel is out, though the last
        // charge may not have checked.
        let may_call_import = match op {
            Operator::Call { function_index } => *function_index < self.cx.imported_functions,
            Operator::CallIndirect { .. } => self.cx.imports_in_tables,
            _ => false,
        };
        // The global may lag behind the local until something could see it.
        if !self.synced && !quiet(op, height) {
            fuel::sync(&mut self.segment, globals, self.counter);
            self.synced = true;
        }
        if may_call_import && !self.cx.options.check_every_charge {
            fuel::check(&mut self.segment, globals, self.counter);
            self.counts.fuel_checks += 1;
        }

        self.segment.extend_from_slice(bytes);
        self.cost += 1;

        match op {
            Operator::Call { function_index } if *function_index >= self.cx.imported_functions => {
                self.restore();
            }
            Operator::CallIndirect { .. } => self.restore(),
            Operator::MemoryGrow { .. } | Operator::TableGrow { .. } => {
                let delta = self.length_scratch();
                let grown = self.grown_scratch();
                let shift = match op {
                    Operator::MemoryGrow { .. } => fuel::PAGE_SHIFT,
                    _ => fuel::GROWN_ELEMENTS_SHIFT,
                };
                fuel::after_grow(
                    &mut self.segment,
                    globals,
                    self.counter,
                    delta,
                    grown,
                    shift,
                );
                self.synced = true;
                self.counts.length_charges += 1;
            }
            _ => {}
        }
        if let Some(canon) = nan::after(op) {
            let scratch = self.canon_scratch(canon);
            nan::canonicalize(&mut self.segment, canon, scratch);
            self.counts.nan_sites += 1;
        }

        // A segment starts after each of these; after the function's own
        // `end` (the validator accepted it, so nothing follows) the last
        // segment is written out.
        match op {
            Operator::Loop { .. } => self.end_segment(true),
            Operator::If { .. } | Operator::Else | Operator::End => self.end_segment(false),
            _ => {}
        }

        if self.out.len() + self.segment.len() > self.cx.options.max_function_bytes {
            return Err(PrepareError::FunctionTooLarge {
                function: self.index,
                limit: self.cx.options.max_function_bytes,
            });
        }
        Ok(())
    }

    /// The current segment ends: its charge, then its instructions. The
    /// next one's charge checks if `next_checked`.
    fn end_segment(&mut self, next_checked: bool) {
        let globals = self.cx.globals;
        fuel::charge(&mut self.out, globals, self.counter, self.cost, self.entry);
        if self.checked || self.cx.options.check_every_charge {
            fuel::check(&mut self.out, globals, self.counter);
            self.counts.fuel_checks += 1;
        }
        self.out.append(&mut self.segment);
        self.cost = 0;
        self.entry = false;
        self.checked = next_checked;
        self.synced = self.counter == Counter::Global;
        self.counts.fuel_charges += 1;
    }

    /// After a call that may enter a prepared function: back to this
    /// frame's level, and the fuel it left.
    fn restore(&mut self) {
        fuel::reload(&mut self.segment, self.cx.globals, self.counter);
        self.synced = true;
        let level = scratch(
            &mut self.level,
            &mut self.scratch_types,
            self.first_scratch,
            ValType::I32,
        );
        stack::restore(&mut self.segment, self.cx.globals, level);
        self.counts.call_restores += 1;
    }

    fn length_scratch(&mut self) -> u32 {
        scratch(
            &mut self.length,
            &mut self.scratch_types,
            self.first_scratch,
            ValType::I32,
        )
    }

    fn grown_scratch(&mut self) -> u32 {
        scratch(
            &mut self.grown,
            &mut self.scratch_types,
            self.first_scratch,
            ValType::I32,
        )
    }

    fn canon_scratch(&mut self, canon: Canon) -> u32 {
        let (slot, ty) = match canon {
            Canon::F32 => (&mut self.f32_scratch, ValType::F32),
            Canon::F64 => (&mut self.f64_scratch, ValType::F64),
            Canon::F32x4 | Canon::F64x2 => (&mut self.v128_scratch, ValType::V128),
        };
        scratch(slot, &mut self.scratch_types, self.first_scratch, ty)
    }

    /// The prepared body: the submitted locals (`declarations` entries,
    /// encoded as `submitted_locals`), the scratch locals, the stack
    /// prologue, the segments.
    fn finish(
        self,
        declarations: u32,
        submitted_locals: &[u8],
        weight: u64,
        counts: &mut Instrumentation,
    ) -> Result<Vec<u8>, PrepareError> {
        let options = self.cx.options;
        let mut body = Vec::with_capacity(submitted_locals.len() + self.out.len() + 64);
        let entries = declarations
            .checked_add(self.scratch_types.len() as u32)
            .ok_or_else(|| internal("too many local declarations"))?;
        entries.encode(&mut body);
        body.extend_from_slice(submitted_locals);
        for ty in &self.scratch_types {
            1u32.encode(&mut body);
            ty.encode(&mut body);
        }
        stack::prologue(
            &mut body,
            self.cx.globals,
            stack::clamp(weight, options.stack_budget),
            options.stack_budget,
            self.level,
        );
        body.extend_from_slice(&self.out);
        if body.len() > options.max_function_bytes {
            return Err(PrepareError::FunctionTooLarge {
                function: self.index,
                limit: options.max_function_bytes,
            });
        }
        counts.add(&self.counts);
        Ok(body)
    }
}

/// Whether `op` can neither trap, nor call, nor leave the function (`height`
/// control frames are open after it): while only such instructions run,
/// nothing can see `browsergrid.fuel`, so it may lag behind the shadow
/// local. Anything not listed may (loads, stores, division, `unreachable`,
/// calls, table accesses, bulk operations, SIMD, ...), and is preceded by
/// a write-back.
fn quiet(op: &Operator<'_>, height: u32) -> bool {
    use Operator::*;
    // A branch to the function's own label returns.
    let stays = |depth: u32| depth.saturating_add(1) < height;
    match op {
        Br { relative_depth } | BrIf { relative_depth } => stays(*relative_depth),
        BrTable { targets } => {
            stays(targets.default()) && targets.targets().all(|t| t.is_ok_and(stays))
        }
        // The function's own `end` returns.
        End => height > 0,
        Nop
        | Block { .. }
        | Loop { .. }
        | If { .. }
        | Else
        | Drop
        | Select
        | TypedSelect { .. } => true,
        LocalGet { .. }
        | LocalSet { .. }
        | LocalTee { .. }
        | GlobalGet { .. }
        | GlobalSet { .. } => true,
        I32Const { .. } | I64Const { .. } | F32Const { .. } | F64Const { .. } => true,
        MemorySize { .. } | MemoryGrow { .. } | TableSize { .. } | DataDrop { .. } => true,
        ElemDrop { .. } | RefNull { .. } | RefIsNull | RefFunc { .. } => true,
        I32Eqz | I32Eq | I32Ne | I32LtS | I32LtU | I32GtS | I32GtU | I32LeS | I32LeU | I32GeS
        | I32GeU | I64Eqz | I64Eq | I64Ne | I64LtS | I64LtU | I64GtS | I64GtU | I64LeS | I64LeU
        | I64GeS | I64GeU | F32Eq | F32Ne | F32Lt | F32Gt | F32Le | F32Ge | F64Eq | F64Ne
        | F64Lt | F64Gt | F64Le | F64Ge => true,
        I32Clz | I32Ctz | I32Popcnt | I32Add | I32Sub | I32Mul | I32And | I32Or | I32Xor
        | I32Shl | I32ShrS | I32ShrU | I32Rotl | I32Rotr | I64Clz | I64Ctz | I64Popcnt | I64Add
        | I64Sub | I64Mul | I64And | I64Or | I64Xor | I64Shl | I64ShrS | I64ShrU | I64Rotl
        | I64Rotr => true,
        F32Abs | F32Neg | F32Ceil | F32Floor | F32Trunc | F32Nearest | F32Sqrt | F32Add
        | F32Sub | F32Mul | F32Div | F32Min | F32Max | F32Copysign | F64Abs | F64Neg | F64Ceil
        | F64Floor | F64Trunc | F64Nearest | F64Sqrt | F64Add | F64Sub | F64Mul | F64Div
        | F64Min | F64Max | F64Copysign => true,
        I32WrapI64 | I64ExtendI32S | I64ExtendI32U | F32ConvertI32S | F32ConvertI32U
        | F32ConvertI64S | F32ConvertI64U | F32DemoteF64 | F64ConvertI32S | F64ConvertI32U
        | F64ConvertI64S | F64ConvertI64U | F64PromoteF32 | I32ReinterpretF32
        | I64ReinterpretF64 | F32ReinterpretI32 | F64ReinterpretI64 => true,
        I32Extend8S | I32Extend16S | I64Extend8S | I64Extend16S | I64Extend32S => true,
        I32TruncSatF32S | I32TruncSatF32U | I32TruncSatF64S | I32TruncSatF64U | I64TruncSatF32S
        | I64TruncSatF32U | I64TruncSatF64S | I64TruncSatF64U => true,
        _ => false,
    }
}

/// The scratch local in `slot`, made on first use.
fn scratch(slot: &mut Option<u32>, types: &mut Vec<ValType>, first: u32, ty: ValType) -> u32 {
    *slot.get_or_insert_with(|| {
        types.push(ty);
        first + types.len() as u32 - 1
    })
}

fn internal(what: &str) -> PrepareError {
    PrepareError::Internal(what.to_string())
}
