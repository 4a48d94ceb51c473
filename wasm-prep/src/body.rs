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
//! instrumentation needed (one of each kind at most), then the stack
//! prologue, then the segments, each after its charge.

use wasm_encoder::{Encode, ValType};
use wasmparser::{
    FuncValidator, FunctionBody, Operator, OperatorsReader, OperatorsReaderAllocations,
    ValidatorResources,
};

use crate::error::PrepareError;
use crate::nan::{self, Canon};
use crate::{Globals, Instrumentation, Options, features, fuel, stack};

/// The most scratch locals a function gets: the frame level, a length, a
/// grow's result, and one f32, f64 and v128.
pub(crate) const MAX_SCRATCH_LOCALS: u32 = 6;

/// What a body's rewrite needs to know about its module.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    /// The whole submitted module: instructions are copied from it.
    pub module: &'a [u8],
    pub globals: Globals,
    pub imported_functions: u32,
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
        writer.instruction(&op, bytes)?;
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
        Writer {
            cx,
            index,
            out: Vec::new(),
            segment: Vec::new(),
            cost: 0,
            first_scratch: params_and_locals,
            scratch_types: Vec::new(),
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
    /// around it.
    fn instruction(&mut self, op: &Operator<'_>, bytes: &[u8]) -> Result<(), PrepareError> {
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
                fuel::charge_length(&mut self.segment, globals, length, fuel::BYTES_SHIFT);
                self.counts.length_charges += 1;
            }
            Operator::TableFill { .. }
            | Operator::TableCopy { .. }
            | Operator::TableInit { .. } => {
                let length = self.length_scratch();
                fuel::charge_length(&mut self.segment, globals, length, fuel::ELEMENTS_SHIFT);
                self.counts.length_charges += 1;
            }
            Operator::MemoryGrow { .. } | Operator::TableGrow { .. } => {
                let delta = self.length_scratch();
                fuel::before_grow(&mut self.segment, delta);
            }
            _ => {}
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
                fuel::after_grow(&mut self.segment, globals, delta, grown, shift);
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
        if matches!(
            op,
            Operator::Loop { .. } | Operator::If { .. } | Operator::Else | Operator::End
        ) {
            self.end_segment();
        }

        if self.out.len() + self.segment.len() > self.cx.options.max_function_bytes {
            return Err(PrepareError::FunctionTooLarge {
                function: self.index,
                limit: self.cx.options.max_function_bytes,
            });
        }
        Ok(())
    }

    /// The current segment ends: its charge, then its instructions.
    fn end_segment(&mut self) {
        fuel::charge(&mut self.out, self.cx.globals, self.cost);
        self.out.append(&mut self.segment);
        self.cost = 0;
        self.counts.fuel_charges += 1;
    }

    /// After a call that may enter a prepared function: back to this
    /// frame's level.
    fn restore(&mut self) {
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
