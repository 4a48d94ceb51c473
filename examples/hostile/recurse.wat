;; recurse: unbounded recursion.
;;
;; $deeper calls itself before it can return, with the result of the call
;; still needed afterwards (so it is no tail call an engine could turn into
;; a loop). Under the grid the call depth limit stops it: trap 2 (stack
;; limit), the same depth in every engine. Plain node throws a RangeError
;; ("Maximum call stack size exceeded") at a depth of its own choosing.
(module
  (memory (export "memory") 1)

  ;; deeper(n) = 1 + deeper(n + 1): never returns.
  (func $deeper (param $n i64) (result i64)
    (i64.add
      (i64.const 1)
      (call $deeper (i64.add (local.get $n) (i64.const 1)))))

  (func (export "_start")
    (drop (call $deeper (i64.const 0)))))
