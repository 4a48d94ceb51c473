;; scribble: writes 100 MiB to stdout.
;;
;; A 64 KiB buffer of lines of 63 '*' and a newline, written again and again
;; until 104857600 bytes are out. Under the grid the task's stdout limit is
;; far below that, so it ends with trap 3 (output limit). Plain node writes
;; all 100 MiB. A failed write (a WASI errno) exits with code 1.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param $fd i32) (param $iovs i32) (param $iovs_len i32) (param $nwritten i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit"
    (func $proc_exit (param $code i32)))

  (memory (export "memory") 2)

  (global $IOVEC i32 (i32.const 0))        ;; one iovec: {buf: i32, len: i32}
  (global $NWRITTEN i32 (i32.const 8))
  (global $BUF i32 (i32.const 65536))      ;; the second page is the buffer
  (global $BUF_LEN i32 (i32.const 65536))
  (global $TOTAL i32 (i32.const 104857600)) ;; 100 MiB

  (func (export "_start")
    (local $i i32)
    (local $left i32)

    ;; Fill the buffer: '*' everywhere, then '\n' at every 64th byte.
    (memory.fill (global.get $BUF) (i32.const 42) (global.get $BUF_LEN))
    (local.set $i (i32.add (global.get $BUF) (i32.const 63)))
    (loop $newline
      (i32.store8 (local.get $i) (i32.const 10))
      (local.set $i (i32.add (local.get $i) (i32.const 64)))
      (br_if $newline (i32.lt_u (local.get $i) (i32.add (global.get $BUF) (global.get $BUF_LEN)))))

    ;; Write until TOTAL bytes are out, counting what each write took.
    (local.set $left (global.get $TOTAL))
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $left)))
        (i32.store (global.get $IOVEC) (global.get $BUF))
        (i32.store offset=4 (global.get $IOVEC)
          (select (local.get $left) (global.get $BUF_LEN)
            (i32.lt_u (local.get $left) (global.get $BUF_LEN))))
        (if (call $fd_write (i32.const 1) (global.get $IOVEC) (i32.const 1) (global.get $NWRITTEN))
          (then (call $proc_exit (i32.const 1))))
        (local.set $left (i32.sub (local.get $left) (i32.load (global.get $NWRITTEN))))
        (br $more)))))
