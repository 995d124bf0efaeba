// clone3 with a function to run on the child's own stack: glibc (2.36) has no public clone3
// wrapper, and clone3 returns in the child on the new stack with every other register as it was,
// so the child's half cannot be C++ (the compiler's frame would be gone). The supervisor's spawn
// and bench/spawn_loop's cgroup variant use it (x86-64 only; elsewhere SR_HAVE_CLONE3 is unset).
#pragma once

#if defined(__x86_64__)
#include <linux/sched.h>
#include <sys/syscall.h>
#include <sys/types.h>

#include <cerrno>

#define SR_HAVE_CLONE3 1

namespace sr {

/// Clones as `args` says (args->stack must be set), the child calling fn(arg) on that stack and
/// exiting with its return value. Returns the child's pid, or -1 with errno.
inline pid_t Clone3(clone_args* args, int (*fn)(void*), void* arg) {
  long ret = SYS_clone3;
  register int (*fn_reg)(void*) asm("r12") = fn;
  register void* arg_reg asm("r13") = arg;
  asm volatile(
      "syscall\n\t"
      "testq %%rax, %%rax\n\t"
      "jnz 1f\n\t"
      "xorl %%ebp, %%ebp\n\t"  // the child: no caller frame to unwind into
      "movq %%r13, %%rdi\n\t"
      "callq *%%r12\n\t"
      "movq %%rax, %%rdi\n\t"
      "movl %[exit_nr], %%eax\n\t"
      "syscall\n\t"
      "hlt\n\t"
      "1:\n\t"
      : "+a"(ret)
      : "D"(args), "S"(sizeof *args), "r"(fn_reg), "r"(arg_reg), [exit_nr] "i"(SYS_exit)
      : "rcx", "r11", "memory", "cc");
  if (ret < 0) {
    errno = static_cast<int>(-ret);
    return -1;
  }
  return static_cast<pid_t>(ret);
}

}  // namespace sr
#endif
