//! Tasker engine: workflow orchestration on PostgreSQL.
//!
//! A *task* is an instance of a *task template* (a DAG of *workflow steps*).
//! Orchestration enqueues ready steps on pgmq queues, workers run step
//! handlers and send results back, orchestration records them and moves the
//! task on. See `docs/architecture.md` for the map of this crate.

pub mod api;
pub mod client;
pub mod config;
pub mod database;
pub mod embedded;
pub mod orchestration;
pub mod queue;
pub mod service;
pub mod state;
pub mod telemetry;
pub mod template;
pub mod testing;
pub mod worker;

pub use client::{TaskView, TaskerClient};
pub use config::TaskerConfig;
pub use embedded::Embedded;
pub use orchestration::{TaskCreated, TaskRequest};
pub use state::{StepState, TaskState};
pub use template::TaskTemplate;
pub use worker::{HandlerError, HandlerRegistry, StepContext, StepHandler};
