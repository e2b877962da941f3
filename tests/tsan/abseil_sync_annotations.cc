// File: tests/tsan/abseil_sync_annotations.cc
//
// Makes Abseil's Mutex, CondVar and Notification visible to ThreadSanitizer
// in the TSan build (CATQ_TSAN), linked into every executable of that build.
//
// Why: Debian's libabsl_synchronization is not compiled with -fsanitize=thread,
// so its lock and unlock are plain futex calls that TSan never sees. Every
// access guarded by an absl::Mutex then looks like a data race. (gRPC's own
// locks are absl::Mutex too.) TSan has no interceptor for Abseil as it has for
// pthreads, so this file is one: it defines the public locking functions in
// the executable, where they take precedence over the shared library's for
// every caller (our code, gRPC, and Abseil's own calls, which go through the
// PLT), tells TSan the happens-before edge, and calls the library's function.
//
//   unlock-like     __tsan_release(mutex), then the library's function
//   lock-like       the library's function, then __tsan_acquire(mutex)
//   wait-like       release, the library's function, acquire (Await,
//                   CondVar::Wait: the mutex is released while waiting)
//   Condition::Eval acquire and release of the mutex the calling thread waits
//                   on or is unlocking: Abseil evaluates a waiter's condition
//                   with the mutex held, by the waiter or by the unlocking
//                   thread, and gives the mutex back afterwards
//
// Only happens-before is modelled, not lock order, so TSan's deadlock
// detector does not cover Abseil mutexes here.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "absl/base/options.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace {

#define CATQ_STRINGIFY_INNER(x) #x
#define CATQ_STRINGIFY(x) CATQ_STRINGIFY_INNER(x)

// The mangled name of absl::<inline namespace>::<rest>; `rest` is mangled
// as it follows the namespaces (e.g. "5Mutex4LockEv"), `prefix` is "_ZN" or
// "_ZNK" (const member).
std::string AbseilSymbol(const char* prefix, const char* rest) {
  std::string name = std::string(prefix) + "4absl";
#if ABSL_OPTION_USE_INLINE_NAMESPACE
  const std::string inline_namespace = CATQ_STRINGIFY(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  name += std::to_string(inline_namespace.size()) + inline_namespace;
#endif
  return name + rest;
}

// The shared library's definition of the symbol this file overrides. A
// missing one (another Abseil ABI) stops the test at once rather than
// deadlocking or silently losing the annotations.
template <typename Function>
Function Original(const char* prefix, const char* rest) {
  const std::string name = AbseilSymbol(prefix, rest);
  void* address = dlsym(RTLD_NEXT, name.c_str());
  if (address == nullptr) {
    std::fprintf(stderr, "tsan support: %s not found in the Abseil library\n", name.c_str());
    std::abort();
  }
  return reinterpret_cast<Function>(address);
}

// The mutex this thread is waiting on inside Await, LockWhen or a CondVar,
// or is unlocking (Abseil evaluates the waiters' conditions as it unlocks);
// null elsewhere. Conditions evaluated under it are bracketed by an acquire
// and a release of it.
thread_local const absl::Mutex* evaluating_for = nullptr;

class ScopedWait {
 public:
  explicit ScopedWait(const absl::Mutex* mu) : previous_(evaluating_for) { evaluating_for = mu; }
  ~ScopedWait() { evaluating_for = previous_; }

 private:
  const absl::Mutex* previous_;
};

void Acquire(const void* address) { __tsan_acquire(const_cast<void*>(address)); }
void Release(const void* address) { __tsan_release(const_cast<void*>(address)); }

using MutexFn = void (*)(absl::Mutex*);
using MutexTryFn = bool (*)(absl::Mutex*);
using MutexCondFn = void (*)(absl::Mutex*, const absl::Condition&);
using MutexCondTimeoutFn = bool (*)(absl::Mutex*, const absl::Condition&, absl::Duration);
using MutexCondDeadlineFn = bool (*)(absl::Mutex*, const absl::Condition&, absl::Time);
using CondVarWaitFn = void (*)(absl::CondVar*, absl::Mutex*);
using CondVarTimeoutFn = bool (*)(absl::CondVar*, absl::Mutex*, absl::Duration);
using CondVarDeadlineFn = bool (*)(absl::CondVar*, absl::Mutex*, absl::Time);
using EvalFn = bool (*)(const absl::Condition*);
using NotifyFn = void (*)(absl::Notification*);
using WaitForNotificationFn = void (*)(const absl::Notification*);
using WaitForNotificationTimeoutFn = bool (*)(const absl::Notification*, absl::Duration);
using WaitForNotificationDeadlineFn = bool (*)(const absl::Notification*, absl::Time);

// A lock-like call: the library's function with the wait marker set (it may
// evaluate the condition), then the acquire.
template <typename Function, typename... Args>
auto LockLike(Function original, absl::Mutex* mu, Args&&... args) {
  ScopedWait wait(mu);
  if constexpr (std::is_void_v<decltype(original(mu, args...))>) {
    original(mu, args...);
    Acquire(mu);
  } else {
    auto result = original(mu, args...);
    Acquire(mu);
    return result;
  }
}

// Abseil's own deadlock detection keeps a lock graph (GraphCycles) under a
// spinlock this file cannot annotate; gRPC's locks would then show as races
// inside it. TSan is here for data races, so the graph is turned off.
const bool kAbseilDeadlockDetectionOff = [] {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return true;
}();

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  static const auto original = Original<MutexFn>("_ZN", "5Mutex4LockEv");
  LockLike(original, this);
}

void Mutex::ReaderLock() {
  static const auto original = Original<MutexFn>("_ZN", "5Mutex10ReaderLockEv");
  LockLike(original, this);
}

bool Mutex::TryLock() {
  static const auto original = Original<MutexTryFn>("_ZN", "5Mutex7TryLockEv");
  const bool locked = original(this);
  if (locked) Acquire(this);
  return locked;
}

bool Mutex::ReaderTryLock() {
  static const auto original = Original<MutexTryFn>("_ZN", "5Mutex13ReaderTryLockEv");
  const bool locked = original(this);
  if (locked) Acquire(this);
  return locked;
}

void Mutex::Unlock() {
  static const auto original = Original<MutexFn>("_ZN", "5Mutex6UnlockEv");
  Release(this);
  ScopedWait unlocking(this);
  original(this);
}

void Mutex::ReaderUnlock() {
  static const auto original = Original<MutexFn>("_ZN", "5Mutex12ReaderUnlockEv");
  Release(this);
  ScopedWait unlocking(this);
  original(this);
}

void Mutex::LockWhen(const Condition& cond) {
  static const auto original = Original<MutexCondFn>("_ZN", "5Mutex8LockWhenERKNS0_9ConditionE");
  LockLike(original, this, cond);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  static const auto original =
      Original<MutexCondFn>("_ZN", "5Mutex14ReaderLockWhenERKNS0_9ConditionE");
  LockLike(original, this, cond);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  static const auto original = Original<MutexCondTimeoutFn>(
      "_ZN", "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  return LockLike(original, this, cond, timeout);
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, Duration timeout) {
  static const auto original = Original<MutexCondTimeoutFn>(
      "_ZN", "5Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  return LockLike(original, this, cond, timeout);
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  static const auto original = Original<MutexCondDeadlineFn>(
      "_ZN", "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  return LockLike(original, this, cond, deadline);
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, Time deadline) {
  static const auto original = Original<MutexCondDeadlineFn>(
      "_ZN", "5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  return LockLike(original, this, cond, deadline);
}

void Mutex::Await(const Condition& cond) {
  static const auto original = Original<MutexCondFn>("_ZN", "5Mutex5AwaitERKNS0_9ConditionE");
  Release(this);
  LockLike(original, this, cond);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  static const auto original = Original<MutexCondTimeoutFn>(
      "_ZN", "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Release(this);
  return LockLike(original, this, cond, timeout);
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  static const auto original =
      Original<MutexCondDeadlineFn>("_ZN", "5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Release(this);
  return LockLike(original, this, cond, deadline);
}

void CondVar::Wait(Mutex* mu) {
  static const auto original = Original<CondVarWaitFn>("_ZN", "7CondVar4WaitEPNS0_5MutexE");
  Release(mu);
  original(this, mu);
  Acquire(mu);
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  static const auto original =
      Original<CondVarTimeoutFn>("_ZN", "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  Release(mu);
  const bool timed_out = original(this, mu, timeout);
  Acquire(mu);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  static const auto original =
      Original<CondVarDeadlineFn>("_ZN", "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  Release(mu);
  const bool timed_out = original(this, mu, deadline);
  Acquire(mu);
  return timed_out;
}

bool Condition::Eval() const {
  static const auto original = Original<EvalFn>("_ZNK", "9Condition4EvalEv");
  if (evaluating_for == nullptr) return original(this);
  // The mutex is held during the evaluation, by the waiter or by the thread
  // that unlocks it for the waiter; either gives it back inside the library
  // afterwards (a waiter whose condition is false sleeps again), so the
  // evaluation ends with a release.
  Acquire(evaluating_for);
  const bool result = original(this);
  Release(evaluating_for);
  return result;
}

// Notification's waits return at once, without locking, once the library's
// atomic flag is set; that store and load are invisible too, so Notify
// releases and every wait acquires on the notification itself. (The inline
// HasBeenNotified() cannot be covered: code that hands data over with it
// alone would be reported.)
void Notification::Notify() {
  static const auto original = Original<NotifyFn>("_ZN", "12Notification6NotifyEv");
  Release(this);
  original(this);
}

void Notification::WaitForNotification() const {
  static const auto original =
      Original<WaitForNotificationFn>("_ZNK", "12Notification19WaitForNotificationEv");
  original(this);
  Acquire(this);
}

bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  static const auto original = Original<WaitForNotificationTimeoutFn>(
      "_ZNK", "12Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
  const bool notified = original(this, timeout);
  Acquire(this);
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  static const auto original = Original<WaitForNotificationDeadlineFn>(
      "_ZNK", "12Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
  const bool notified = original(this, deadline);
  Acquire(this);
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl
