;; sockets: asks for a network socket.
;;
;; It imports WASI's `sock_accept`, which the grid does not offer: the
;; module is refused when it is submitted (or run with `grid run`), before
;; any task runs. (Node's own WASI has sock_accept, so node runs it: the
;; call fails with an errno, as there is no socket at fd 3.)
(module
  (import "wasi_snapshot_preview1" "sock_accept"
    (func $sock_accept (param $fd i32) (param $flags i32) (param $result_fd i32) (result i32)))

  (memory (export "memory") 1)

  (func (export "_start")
    ;; Accept a connection on fd 3, as a server with a listening socket would.
    (drop (call $sock_accept (i32.const 3) (i32.const 0) (i32.const 0)))))
