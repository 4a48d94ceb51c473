;; grow: takes all the memory it can get, then says how much that was.
;;
;; memory.grow in a loop until the memory is as large as it can get, then
;; write the memory's size in pages (the first page included) to stdout in
;; decimal, with a newline. Under the grid the memory's maximum is the job's
;; limit, so with `--memory 64` (MiB) this prints 1024 in every engine (and
;; 4096 with the default 256 MiB); plain node prints the engine's own
;; ceiling (65536 pages, 4 GiB, in Node 20).
;;
;; The loop asks for 65536 pages (all of wasm32) first and halves its request
;; each time memory.grow refuses it (returns -1), down to one page: the exact
;; ceiling in a few dozen calls. (One page at a time would take 4096 calls
;; for 256 MiB, and V8 grows a memory slowly: 130 s to reach 4 GiB in
;; Node 20.)
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param $fd i32) (param $iovs i32) (param $iovs_len i32) (param $nwritten i32) (result i32)))

  (memory (export "memory") 1)

  ;; Where things live in the first page.
  (global $IOVEC i32 (i32.const 0))     ;; one iovec: {buf: i32, len: i32}
  (global $NWRITTEN i32 (i32.const 8))  ;; fd_write's count of bytes written
  (global $END i32 (i32.const 32))      ;; the decimal text ends just before this

  (func (export "_start")
    (local $step i32) ;; pages to ask for next
    (local $n i32)    ;; the number still to print
    (local $p i32)    ;; the text's first byte

    ;; Grow by $step while that works; when it is refused, halve $step.
    (local.set $step (i32.const 65536))
    (loop $more
      (if (i32.eq (memory.grow (local.get $step)) (i32.const -1))
        (then (local.set $step (i32.shr_u (local.get $step) (i32.const 1)))))
      (br_if $more (local.get $step)))

    ;; The size in decimal, written backwards from the newline at END - 1.
    (local.set $n (memory.size))
    (local.set $p (i32.sub (global.get $END) (i32.const 1)))
    (i32.store8 (local.get $p) (i32.const 10)) ;; '\n'
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10)))) ;; '0' + n % 10
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digit (local.get $n)))

    ;; One fd_write of the text to stdout (fd 1).
    (i32.store (global.get $IOVEC) (local.get $p))
    (i32.store offset=4 (global.get $IOVEC) (i32.sub (global.get $END) (local.get $p)))
    (drop (call $fd_write (i32.const 1) (global.get $IOVEC) (i32.const 1) (global.get $NWRITTEN)))))
