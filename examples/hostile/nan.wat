;; nan: computes NaNs at run time and writes their raw bits to stdout.
;;
;; Output: 24 bytes, little-endian:
;;    0..4   f32  0.0 / 0.0
;;    4..8   f32  sqrt(-1.0)
;;    8..16  f64  0.0 / 0.0
;;   16..24  f64  sqrt(-1.0)
;;
;; IEEE 754 says these are NaNs but not which NaN: x86 hardware gives the
;; "default NaN" with the sign bit set (f32 ffc00000, f64 fff8000000000000),
;; ARM gives it clear (7fc00000, 7ff8000000000000), and WebAssembly lets an
;; engine return either. The grid canonicalizes every NaN a kernel can
;; observe, so under the grid the bytes are the same everywhere:
;;   0000c07f 0000c07f 000000000000f87f 000000000000f87f
;; while plain node on x86 prints the sign-set ones.
;;
;; The operands are loaded from memory, not written as constants, so that
;; no engine can fold the operations at compile time.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param $fd i32) (param $iovs i32) (param $iovs_len i32) (param $nwritten i32) (result i32)))

  (memory (export "memory") 1)

  ;; Operands: -1.0 as f32 at 64, -1.0 as f64 at 72; zeros at 80 (memory
  ;; starts zeroed).
  (data (i32.const 64) "\00\00\80\bf")
  (data (i32.const 72) "\00\00\00\00\00\00\f0\bf")
  (global $MINUS_ONE_F32 i32 (i32.const 64))
  (global $MINUS_ONE_F64 i32 (i32.const 72))
  (global $ZERO i32 (i32.const 80))

  (global $OUT i32 (i32.const 0))      ;; the 24 bytes of results
  (global $IOVEC i32 (i32.const 32))   ;; one iovec: {buf: i32, len: i32}
  (global $NWRITTEN i32 (i32.const 40))

  (func (export "_start")
    (f32.store offset=0 (global.get $OUT)
      (f32.div (f32.load (global.get $ZERO)) (f32.load (global.get $ZERO))))
    (f32.store offset=4 (global.get $OUT)
      (f32.sqrt (f32.load (global.get $MINUS_ONE_F32))))
    (f64.store offset=8 (global.get $OUT)
      (f64.div (f64.load (global.get $ZERO)) (f64.load (global.get $ZERO))))
    (f64.store offset=16 (global.get $OUT)
      (f64.sqrt (f64.load (global.get $MINUS_ONE_F64))))

    (i32.store (global.get $IOVEC) (global.get $OUT))
    (i32.store offset=4 (global.get $IOVEC) (i32.const 24))
    (drop (call $fd_write (i32.const 1) (global.get $IOVEC) (i32.const 1) (global.get $NWRITTEN)))))
