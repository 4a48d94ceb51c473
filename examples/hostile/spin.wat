;; spin: an infinite loop, and nothing else.
;;
;; Under the grid the loop is charged fuel on every trip round it, so the
;; task ends with trap 1 (out of fuel) once it has used the job's `--fuel`.
;; Without a fuel limit (plain node) it never returns.
(module
  (memory (export "memory") 1)

  (func (export "_start")
    (local $turns i64)
    (loop $forever
      ;; Count the turns, so that the loop does some work an engine must keep.
      (local.set $turns (i64.add (local.get $turns) (i64.const 1)))
      (br $forever))))
