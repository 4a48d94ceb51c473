//! The walk over a submitted module's sections: the kernel's contract
//! checked section by section, each section validated with wasmparser and
//! then copied or rewritten into the prepared module.
//!
//! | section | checked | written |
//! |---|---|---|
//! | type | function types only (no GC types) | copied |
//! | import | WASI functions only, exact signatures | copied |
//! | function | at most [`Options::max_functions`] | copied |
//! | table | 32-bit, unshared, no initializer, start within the limit | max = min(declared, [`Options::max_table_elements`]) |
//! | memory | exactly one, 32-bit, unshared, default pages, start within the job's limit | max = min(declared, the job's limit) |
//! | tag | refused (exceptions) | |
//! | global | unshared | copied, then `browsergrid.fuel`, `browsergrid.trap` and the stack pointer appended |
//! | export | `_start` a defined [] -> [] function, `memory` the memory, no `browsergrid.*` | copied, then the two globals appended |
//! | start | refused | |
//! | element, data count, data | validated | copied |
//! | code | each body ([`crate::body`]) | rewritten |
//! | custom | | `name` copied, others dropped |
//!
//! The contract's checks that name a problem run before wasmparser's
//! validator sees a section, so that the error names it; the checks that
//! need a valid section run after.

use grid_kernels::wasm::{self, WASI_MODULE, WasmLimits, exports};
use wasm_encoder::{
    CodeSection, ConstExpr, CustomSection, Encode, ExportKind, GlobalType, MemorySection,
    MemoryType, RawSection, TableSection, TableType, ValType,
};
use wasmparser::{
    CompositeInnerType, Encoding, ExternalKind, FuncType, FuncValidatorAllocations,
    OperatorsReaderAllocations, Parser, Payload, SectionLimited, TableInit, TypeRef, ValidPayload,
    Validator, WasmModuleResources,
};

use crate::body::{self, Context};
use crate::error::{PrepareError, Proposal};
use crate::{Globals, Info, Options, Prepared, features};

/// Validates `module` and writes its prepared form.
pub(crate) fn prepare(
    module: &[u8],
    limits: &WasmLimits,
    options: &Options,
) -> Result<Prepared, PrepareError> {
    let mut walk = Walk::new(module, limits, options);
    let mut parser = Parser::new(0);
    parser.set_features(features::ALLOWED);
    for payload in parser.parse_all(module) {
        walk.payload(payload?)?;
        if walk.out.as_slice().len() > options.max_prepared_bytes {
            return Err(PrepareError::PreparedTooLarge {
                limit: options.max_prepared_bytes,
            });
        }
    }
    walk.finish()
}

struct Walk<'a> {
    module: &'a [u8],
    limits: &'a WasmLimits,
    options: &'a Options,
    validator: Validator,
    out: wasm_encoder::Module,
    /// Each type's signature: all are function types once validated.
    types: Vec<Option<FuncType>>,
    /// Each function's type index, imported functions first.
    func_types: Vec<u32>,
    imported_functions: u32,
    /// Whether an imported function may be called through a table, known
    /// at the first function body ([`Context::imports_in_tables`]).
    imports_in_tables: Option<bool>,
    memories: u32,
    /// The added globals, once the global section is written.
    globals: Option<Globals>,
    exports_seen: bool,
    start: Option<u32>,
    memory_exported: bool,
    code: CodeSection,
    code_left: u32,
    func_allocs: FuncValidatorAllocations,
    ops_allocs: OperatorsReaderAllocations,
    info: Info,
    ended: bool,
}

impl<'a> Walk<'a> {
    fn new(module: &'a [u8], limits: &'a WasmLimits, options: &'a Options) -> Walk<'a> {
        Walk {
            module,
            limits,
            options,
            validator: Validator::new_with_features(features::ALLOWED),
            out: wasm_encoder::Module::new(),
            types: Vec::new(),
            func_types: Vec::new(),
            imported_functions: 0,
            imports_in_tables: None,
            memories: 0,
            globals: None,
            exports_seen: false,
            start: None,
            memory_exported: false,
            code: CodeSection::new(),
            code_left: 0,
            func_allocs: FuncValidatorAllocations::default(),
            ops_allocs: OperatorsReaderAllocations::default(),
            info: Info::default(),
            ended: false,
        }
    }

    fn payload(&mut self, payload: Payload<'a>) -> Result<(), PrepareError> {
        match &payload {
            Payload::Version { encoding, .. } => {
                if *encoding == Encoding::Component {
                    return Err(PrepareError::Component);
                }
                self.validator.payload(&payload)?;
            }
            Payload::TypeSection(reader) => {
                for group in reader.clone() {
                    for ty in group?.types() {
                        if !matches!(ty.composite_type.inner, CompositeInnerType::Func(_)) {
                            return Err(unsupported(Proposal::Gc, "a struct or array type"));
                        }
                    }
                }
                self.validator.payload(&payload)?;
                for group in reader.clone() {
                    for ty in group?.into_types() {
                        self.types.push(match ty.composite_type.inner {
                            CompositeInnerType::Func(f) => Some(f),
                            _ => None,
                        });
                    }
                }
                self.copy(&payload)?;
            }
            Payload::ImportSection(reader) => {
                for import in reader.clone().into_imports() {
                    let import = import?;
                    self.import(import.module, import.name, import.ty)?;
                }
                self.validator.payload(&payload)?;
                self.copy(&payload)?;
            }
            Payload::FunctionSection(reader) => {
                let count = u64::from(self.imported_functions) + u64::from(reader.count());
                if count > u64::from(self.options.max_functions) {
                    return Err(PrepareError::TooManyFunctions {
                        count,
                        limit: self.options.max_functions,
                    });
                }
                self.validator.payload(&payload)?;
                for ty in reader.clone() {
                    self.func_types.push(ty?);
                }
                self.info.functions = reader.count();
                self.copy(&payload)?;
            }
            Payload::TableSection(reader) => {
                for table in reader.clone() {
                    let table = table?;
                    if table.ty.table64 {
                        return Err(unsupported(Proposal::Memory64, "a 64-bit table"));
                    }
                    if table.ty.shared {
                        return Err(unsupported(Proposal::Threads, "a shared table"));
                    }
                    if let TableInit::Expr(_) = table.init {
                        return Err(unsupported(Proposal::Gc, "a table with an initializer"));
                    }
                }
                self.validator.payload(&payload)?;
                let limit = self.options.max_table_elements;
                let mut section = TableSection::new();
                for (index, table) in reader.clone().into_iter().enumerate() {
                    let ty = table?.ty;
                    if ty.initial > u64::from(limit) {
                        return Err(PrepareError::TableTooLarge {
                            table: u32::try_from(index).unwrap_or(u32::MAX),
                            elements: ty.initial,
                            limit,
                        });
                    }
                    let element_type = ty.element_type.try_into().map_err(|e| {
                        PrepareError::Internal(format!("a table's element type: {e}"))
                    })?;
                    section.table(TableType {
                        element_type,
                        table64: false,
                        minimum: ty.initial,
                        maximum: Some(ty.maximum.unwrap_or(u64::MAX).min(u64::from(limit))),
                        shared: false,
                    });
                }
                self.out.section(&section);
            }
            Payload::MemorySection(reader) => {
                self.memories = self.memories.saturating_add(reader.count());
                if self.memories > 1 {
                    let detail = format!("{} memories", self.memories);
                    return Err(PrepareError::Unsupported {
                        proposal: Proposal::MultiMemory,
                        detail,
                    });
                }
                for memory in reader.clone() {
                    let memory = memory?;
                    if memory.memory64 {
                        return Err(unsupported(Proposal::Memory64, "a 64-bit memory"));
                    }
                    if memory.shared {
                        return Err(unsupported(Proposal::Threads, "a shared memory"));
                    }
                    if memory.page_size_log2.is_some() {
                        return Err(unsupported(Proposal::CustomPageSizes, ""));
                    }
                }
                self.validator.payload(&payload)?;
                let limit = self.limits.memory_pages();
                let mut section = MemorySection::new();
                for memory in reader.clone() {
                    let memory = memory?;
                    if memory.initial > u64::from(limit) {
                        return Err(PrepareError::MemoryTooLarge {
                            pages: memory.initial,
                            limit_mib: self.limits.memory_mib,
                        });
                    }
                    // 65,536 pages are a 32-bit memory's whole 4 GiB.
                    let max = memory.maximum.unwrap_or(65_536).min(u64::from(limit));
                    self.info.memory_min_pages = u32::try_from(memory.initial).unwrap_or(limit);
                    self.info.memory_declared_max_pages = memory.maximum;
                    self.info.memory_max_pages = u32::try_from(max).unwrap_or(limit);
                    section.memory(MemoryType {
                        minimum: memory.initial,
                        maximum: Some(max),
                        memory64: false,
                        shared: false,
                        page_size_log2: None,
                    });
                }
                self.out.section(&section);
            }
            Payload::TagSection(_) => {
                return Err(unsupported(Proposal::Exceptions, "a tag section"));
            }
            Payload::GlobalSection(reader) => {
                for global in reader.clone() {
                    if global?.ty.shared {
                        return Err(unsupported(Proposal::Threads, "a shared global"));
                    }
                }
                self.validator.payload(&payload)?;
                self.write_globals(Some(reader))?;
            }
            Payload::ExportSection(reader) => {
                if self.globals.is_none() {
                    self.write_globals(None)?;
                }
                for export in reader.clone() {
                    let name = export?.name;
                    if name.starts_with("browsergrid.") {
                        return Err(PrepareError::ReservedExport { name: name.into() });
                    }
                }
                self.validator.payload(&payload)?;
                for export in reader.clone() {
                    let export = export?;
                    match export.name {
                        exports::START => self.start(export.kind, export.index)?,
                        exports::MEMORY => {
                            if export.kind != ExternalKind::Memory {
                                return Err(PrepareError::NoMemoryExport);
                            }
                            self.memory_exported = true;
                        }
                        _ => {}
                    }
                }
                self.exports_seen = true;
                self.write_exports(reader)?;
            }
            Payload::StartSection { func, .. } => {
                return Err(PrepareError::StartSection { function: *func });
            }
            Payload::ElementSection(_) | Payload::DataCountSection { .. } => {
                self.validator.payload(&payload)?;
                self.copy(&payload)?;
            }
            Payload::DataSection(_) => {
                self.validator.payload(&payload)?;
                self.copy(&payload)?;
            }
            Payload::CodeSectionStart { count, .. } => {
                self.validator.payload(&payload)?;
                if !self.exports_seen {
                    return Err(PrepareError::NoStart);
                }
                self.code_left = *count;
                if *count == 0 {
                    self.out.section(&self.code);
                }
            }
            Payload::CodeSectionEntry(_) => {
                let ValidPayload::Func(func, body) = self.validator.payload(&payload)? else {
                    return Err(PrepareError::Internal(
                        "a function body the validator did not hand back".into(),
                    ));
                };
                let globals = self.globals.ok_or(PrepareError::NoStart)?;
                let mut validator = func.into_validator(std::mem::take(&mut self.func_allocs));
                let imports = self.imported_functions;
                let resources = validator.resources();
                let imports_in_tables = *self.imports_in_tables.get_or_insert_with(|| {
                    (0..imports).any(|f| resources.is_function_referenced(f))
                });
                let cx = Context {
                    module: self.module,
                    globals,
                    imported_functions: self.imported_functions,
                    imports_in_tables,
                    options: self.options,
                };
                let index = validator.index();
                let prepared = body::rewrite(
                    &cx,
                    index,
                    &body,
                    &mut validator,
                    &mut self.ops_allocs,
                    &mut self.info.instrumentation,
                )?;
                self.func_allocs = validator.into_allocations();
                self.code.raw(&prepared);
                if self.out.as_slice().len() + self.code.byte_len()
                    > self.options.max_prepared_bytes
                {
                    return Err(PrepareError::PreparedTooLarge {
                        limit: self.options.max_prepared_bytes,
                    });
                }
                self.code_left = self.code_left.saturating_sub(1);
                if self.code_left == 0 {
                    let code = std::mem::take(&mut self.code);
                    self.out.section(&code);
                }
            }
            Payload::CustomSection(reader) => {
                self.validator.payload(&payload)?;
                if reader.name() == "name" {
                    self.out.section(&CustomSection {
                        name: reader.name().into(),
                        data: reader.data().into(),
                    });
                }
            }
            Payload::End(_) => {
                self.validator.payload(&payload)?;
                self.ended = true;
            }
            _ => {
                // Unknown sections, and what only components have: the
                // validator says what is wrong.
                self.validator.payload(&payload)?;
                return Err(PrepareError::Internal(format!(
                    "an unexpected part of a module: {payload:?}"
                )));
            }
        }
        Ok(())
    }

    /// The module's contract, once all of it was seen.
    fn finish(self) -> Result<Prepared, PrepareError> {
        if !self.ended {
            return Err(PrepareError::Internal("the module did not end".into()));
        }
        if self.memories == 0 {
            return Err(PrepareError::NoMemory);
        }
        if self.start.is_none() {
            return Err(PrepareError::NoStart);
        }
        if !self.memory_exported {
            return Err(PrepareError::NoMemoryExport);
        }
        let mut info = self.info;
        info.imported_functions = self.imported_functions;
        Ok(Prepared {
            bytes: self.out.finish(),
            info,
        })
    }

    /// An import: a WASI function of the subset, with its exact signature.
    fn import(&mut self, module: &str, name: &str, ty: TypeRef) -> Result<(), PrepareError> {
        let kind = match ty {
            TypeRef::Func(_) | TypeRef::FuncExact(_) => None,
            TypeRef::Table(_) => Some("table"),
            TypeRef::Memory(_) => Some("memory"),
            TypeRef::Global(_) => Some("global"),
            TypeRef::Tag(_) => Some("tag"),
        };
        if let Some(kind) = kind {
            return Err(PrepareError::ImportKind {
                kind,
                module: module.into(),
                name: name.into(),
            });
        }
        let allowed = wasm::wasi_import(name).filter(|_| module == WASI_MODULE);
        let Some((_, wasi)) = allowed else {
            return Err(PrepareError::ForbiddenImport {
                module: module.into(),
                name: name.into(),
            });
        };
        let (TypeRef::Func(type_index) | TypeRef::FuncExact(type_index)) = ty else {
            return Ok(());
        };
        // An index out of range is the validator's to report.
        if let Some(Some(found)) = self.types.get(type_index as usize) {
            let expected_params = wasi.params.iter().map(|&t| val_type(t));
            let expected_results = wasi.results.iter().map(|&t| val_type(t));
            if !found.params().iter().copied().eq(expected_params)
                || !found.results().iter().copied().eq(expected_results)
            {
                return Err(PrepareError::ImportSignature {
                    module: WASI_MODULE,
                    name: name.into(),
                    found: signature(found),
                    expected: wasi_signature(wasi),
                });
            }
        }
        self.imported_functions += 1;
        self.func_types.push(type_index);
        self.info.imports.push(wasi.name);
        Ok(())
    }

    /// The `_start` export: a function the module defines, [] -> [].
    fn start(&mut self, kind: ExternalKind, index: u32) -> Result<(), PrepareError> {
        let what = match kind {
            ExternalKind::Func | ExternalKind::FuncExact => None,
            ExternalKind::Table => Some("is a table"),
            ExternalKind::Memory => Some("is a memory"),
            ExternalKind::Global => Some("is a global"),
            ExternalKind::Tag => Some("is a tag"),
        };
        if let Some(what) = what {
            return Err(PrepareError::StartNotFunction(what));
        }
        if index < self.imported_functions {
            return Err(PrepareError::StartNotFunction("is an imported function"));
        }
        let ty = self
            .func_types
            .get(index as usize)
            .and_then(|&t| self.types.get(t as usize))
            .and_then(Option::as_ref)
            .ok_or_else(|| PrepareError::Internal("_start's type is unknown".into()))?;
        if !ty.params().is_empty() || !ty.results().is_empty() {
            return Err(PrepareError::StartType {
                found: signature(ty),
            });
        }
        self.start = Some(index);
        Ok(())
    }

    /// The global section: the module's globals, then ours.
    fn write_globals(
        &mut self,
        reader: Option<&SectionLimited<'a, wasmparser::Global<'a>>>,
    ) -> Result<(), PrepareError> {
        let (count, entries) = match reader {
            Some(reader) => (reader.count(), self.entries(reader.range())?),
            None => (0, &[][..]),
        };
        let globals = Globals {
            fuel: count,
            trap: count + 1,
            sp: count + 2,
        };
        let mut data = Vec::with_capacity(entries.len() + 32);
        (count + 3).encode(&mut data);
        data.extend_from_slice(entries);
        let fuel = i64::try_from(self.limits.fuel).unwrap_or(i64::MAX);
        for (ty, init) in [
            (ValType::I64, ConstExpr::i64_const(fuel)),
            (ValType::I32, ConstExpr::i32_const(0)),
            (ValType::I32, ConstExpr::i32_const(0)),
        ] {
            let global = GlobalType {
                val_type: ty,
                mutable: true,
                shared: false,
            };
            global.encode(&mut data);
            init.encode(&mut data);
        }
        self.out.section(&RawSection { id: 6, data: &data });
        self.globals = Some(globals);
        Ok(())
    }

    /// The export section: the module's exports, then our two globals.
    fn write_exports(
        &mut self,
        reader: &SectionLimited<'a, wasmparser::Export<'a>>,
    ) -> Result<(), PrepareError> {
        let globals = self.globals.ok_or_else(|| {
            PrepareError::Internal("exports before the globals were written".into())
        })?;
        let entries = self.entries(reader.range())?;
        let mut data = Vec::with_capacity(entries.len() + 48);
        (reader.count() + 2).encode(&mut data);
        data.extend_from_slice(entries);
        for (name, index) in [(exports::FUEL, globals.fuel), (exports::TRAP, globals.trap)] {
            name.encode(&mut data);
            ExportKind::Global.encode(&mut data);
            index.encode(&mut data);
        }
        self.out.section(&RawSection { id: 7, data: &data });
        Ok(())
    }

    /// A section's entries: its bytes after the count.
    fn entries(&self, range: std::ops::Range<usize>) -> Result<&'a [u8], PrepareError> {
        let bytes = self.slice(range)?;
        // The count is a LEB128, maybe padded: skip its bytes as encoded.
        let len = bytes
            .iter()
            .position(|b| b & 0x80 == 0)
            .map(|i| i + 1)
            .ok_or_else(|| PrepareError::Internal("a section without a count".into()))?;
        Ok(&bytes[len..])
    }

    /// A section copied as it is.
    fn copy(&mut self, payload: &Payload<'a>) -> Result<(), PrepareError> {
        let (id, range) = payload
            .as_section()
            .ok_or_else(|| PrepareError::Internal("copying what is not a section".into()))?;
        let data = self.slice(range)?;
        self.out.section(&RawSection { id, data });
        Ok(())
    }

    fn slice(&self, range: std::ops::Range<usize>) -> Result<&'a [u8], PrepareError> {
        self.module
            .get(range)
            .ok_or_else(|| PrepareError::Internal("a section outside the module".into()))
    }
}

fn unsupported(proposal: Proposal, detail: &str) -> PrepareError {
    PrepareError::Unsupported {
        proposal,
        detail: detail.into(),
    }
}

fn val_type(ty: wasm::ValType) -> wasmparser::ValType {
    match ty {
        wasm::ValType::I32 => wasmparser::ValType::I32,
        wasm::ValType::I64 => wasmparser::ValType::I64,
    }
}

/// A signature as a person reads it: `(i32, i64) -> i32`.
fn signature(ty: &FuncType) -> String {
    let list = |types: &[wasmparser::ValType]| {
        let names: Vec<String> = types.iter().map(|t| t.to_string()).collect();
        format!("({})", names.join(", "))
    };
    format!("{} -> {}", list(ty.params()), list(ty.results()))
}

fn wasi_signature(wasi: &wasm::WasiImport) -> String {
    let params: Vec<_> = wasi.params.iter().map(|&t| val_type(t)).collect();
    let results: Vec<_> = wasi.results.iter().map(|&t| val_type(t)).collect();
    signature(&FuncType::new(params, results))
}
