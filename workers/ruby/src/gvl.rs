//! Running Rust code with Ruby's GVL released, so that other Ruby threads
//! (the ones running handlers) go on meanwhile.
//!
//! `rb_thread_call_without_gvl2` is used rather than
//! `rb_thread_call_without_gvl`: it never raises (a pending interrupt only
//! makes it return early), so no Ruby exception can unwind through Rust
//! frames; the interrupt is handled once the method returns to Ruby.
//! While the code runs, Ruby may call the unblocking function (on
//! Thread#kill or #raise, a signal for the main thread, the interpreter's
//! exit): it sets the [`Wake`] the code watches, which returns early.

use std::ffi::c_void;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What code running without the GVL watches: Ruby's interrupt, and a
/// wake-up that other threads may send too.
#[derive(Default)]
pub struct Wake {
    interrupted: AtomicBool,
    woken: Mutex<bool>,
    changed: Condvar,
}

impl Wake {
    /// Ruby wants the thread back: return as soon as possible.
    pub fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::Acquire)
    }

    /// Ends [`Wake::wait`]: a thread's work is done.
    pub fn wake(&self) {
        *self.woken.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.changed.notify_all();
    }

    /// Waits until woken (or interrupted), or `timeout` has passed.
    pub fn wait(&self, timeout: Duration) {
        let woken = self.woken.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self
            .changed
            .wait_timeout_while(woken, timeout, |woken| !*woken)
            .unwrap_or_else(|p| p.into_inner());
    }

    fn interrupt(&self) {
        self.interrupted.store(true, Ordering::Release);
        self.wake();
    }
}

/// `f` and where its result goes; lives on the calling thread's stack for
/// the length of the call.
struct Call<F, R> {
    f: Option<F>,
    wake: Arc<Wake>,
    result: Option<std::thread::Result<R>>,
}

/// Runs `f` with the GVL released. `None` when Ruby had an interrupt
/// pending, so that `f` did not run at all. `f` must not touch Ruby
/// objects (it gets only Rust values); a panic in it is resumed here,
/// with the GVL held again, where magnus turns it into a Ruby error.
pub fn without_gvl<F, R>(f: F) -> Option<R>
where
    F: FnOnce(&Arc<Wake>) -> R,
{
    let wake = Arc::new(Wake::default());
    let mut call = Call {
        f: Some(f),
        wake: wake.clone(),
        result: None,
    };
    let data = (&mut call as *mut Call<F, R>).cast::<c_void>();
    // The unblocking function gets the Wake itself (heap, shared), never a
    // pointer into `call`, which `trampoline` borrows mutably meanwhile.
    let ubf_data = Arc::as_ptr(&wake).cast_mut().cast::<c_void>();
    call_without_gvl2(trampoline::<F, R>, data, ubf_data);
    match call.result.take()? {
        Ok(result) => Some(result),
        Err(panic) => panic::resume_unwind(panic),
    }
}

#[allow(unsafe_code)]
fn call_without_gvl2(
    func: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    data: *mut c_void,
    ubf_data: *mut c_void,
) {
    // SAFETY: called on a Ruby thread holding the GVL (only from methods
    // Ruby calls). `data` points to a live `Call<F, R>` and `ubf_data` to a
    // live `Wake`, both owned by `without_gvl`'s frame, which outlives this
    // call; Ruby calls `unblock` only while the call lasts (it unregisters
    // it before returning). The "2" variant does not raise, so no Ruby
    // exception unwinds through Rust frames.
    unsafe {
        rb_sys::rb_thread_call_without_gvl2(Some(func), data, Some(unblock), ubf_data);
    }
}

#[allow(unsafe_code)]
unsafe extern "C" fn trampoline<F, R>(data: *mut c_void) -> *mut c_void
where
    F: FnOnce(&Arc<Wake>) -> R,
{
    // SAFETY: `data` is the `&mut Call<F, R>` that `without_gvl` passed,
    // alive and used by nobody else until this returns.
    let call = unsafe { &mut *data.cast::<Call<F, R>>() };
    if let Some(f) = call.f.take() {
        let wake = &call.wake;
        // A panic must not unwind into Ruby's C frames.
        let result = panic::catch_unwind(AssertUnwindSafe(|| f(wake)));
        call.result = Some(result);
    }
    std::ptr::null_mut()
}

#[allow(unsafe_code)]
unsafe extern "C" fn unblock(data: *mut c_void) {
    // SAFETY: `data` is the `Wake` that `without_gvl` keeps alive for the
    // whole call; `Wake` is Sync, so a shared reference from Ruby's
    // interrupting thread is sound. No Ruby API is used here.
    let wake = unsafe { &*data.cast::<Wake>() };
    wake.interrupt();
}
