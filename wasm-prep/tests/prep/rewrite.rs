//! The tests' own module rewriter: every function body rewritten operator by
//! operator, everything else copied. Used for the fuzz's reference
//! ([`crate::canonical`]) and its modules ([`extern_to_func`]), and to keep
//! wasmi clear of a bug
//! ([`crate::wasmi_workaround`]); it has nothing to do with the preparer's
//! code and shares none of it.

use wasm_encoder::reencode::{self, Reencode, RoundtripReencoder};
use wasm_encoder::{AbstractHeapType, CodeSection, Function, RawSection, ValType};
use wasmparser::{Operator, Parser, Payload, ValidPayload, Validator, WasmFeatures};

/// `module` (valid) with each function body rewritten: `each` writes what
/// replaces one operator, given the index of the first of the `extra`
/// locals every function gets after its own. Custom sections are dropped.
pub fn rewrite_bodies(
    module: &[u8],
    extra: &[ValType],
    mut each: impl FnMut(&mut Function, Operator<'_>, u32) -> Result<(), String>,
) -> Result<Vec<u8>, String> {
    let err = |e: wasmparser::BinaryReaderError| e.to_string();
    let mut validator = Validator::new_with_features(WasmFeatures::default());
    let mut out = wasm_encoder::Module::new();
    let mut code = CodeSection::new();
    let mut bodies_left = 0;
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(err)?;
        let valid = validator.payload(&payload).map_err(err)?;
        match payload {
            Payload::CodeSectionStart { count, .. } => {
                bodies_left = count;
                if count == 0 {
                    out.section(&code);
                }
            }
            Payload::CodeSectionEntry(body) => {
                let ValidPayload::Func(func, _) = valid else {
                    return Err("a body the validator did not hand back".into());
                };
                // The validator counts the parameters and locals.
                let mut func = func.into_validator(Default::default());
                let mut locals = Vec::new();
                let mut reader = body.get_locals_reader().map_err(err)?;
                for _ in 0..reader.get_count() {
                    let offset = reader.original_position();
                    let (count, ty) = reader.read().map_err(err)?;
                    func.define_locals(offset, count, ty).map_err(err)?;
                    let ty = RoundtripReencoder.val_type(ty).map_err(|e| e.to_string())?;
                    locals.push((count, ty));
                }
                let first_extra = func.len_locals();
                locals.extend(extra.iter().map(|&ty| (1, ty)));
                let mut f = Function::new(locals);
                let mut ops = body.get_operators_reader().map_err(err)?;
                while !ops.eof() {
                    each(&mut f, ops.read().map_err(err)?, first_extra)?;
                }
                code.function(&f);
                bodies_left -= 1;
                if bodies_left == 0 {
                    out.section(&code);
                }
            }
            Payload::CustomSection(_) => {}
            other => {
                if let Some((id, range)) = other.as_section() {
                    out.section(&RawSection {
                        id,
                        data: &module[range],
                    });
                }
            }
        }
    }
    Ok(out.finish())
}

/// Writes `op` as it was.
pub fn copy(f: &mut Function, op: Operator<'_>) -> Result<(), String> {
    let op = RoundtripReencoder
        .instruction(op)
        .map_err(|e| e.to_string())?;
    f.instruction(&op);
    Ok(())
}

/// `module` with every `externref` a `funcref`. A kernel may not use
/// externref; in a module whose host gives it none, every externref is null,
/// and a funcref in its place behaves the same.
pub fn extern_to_func(module: &[u8]) -> Result<Vec<u8>, String> {
    struct ExternToFunc;
    impl Reencode for ExternToFunc {
        type Error = std::convert::Infallible;

        fn abstract_heap_type(
            &mut self,
            ty: wasmparser::AbstractHeapType,
        ) -> Result<AbstractHeapType, reencode::Error<Self::Error>> {
            Ok(match ty {
                wasmparser::AbstractHeapType::Extern => AbstractHeapType::Func,
                other => reencode::utils::abstract_heap_type(self, other),
            })
        }
    }
    let mut out = wasm_encoder::Module::new();
    ExternToFunc
        .parse_core_module(&mut out, Parser::new(0), module)
        .map_err(|e| e.to_string())?;
    Ok(out.finish())
}
