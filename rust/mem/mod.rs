//! The memory dirty workload (`mm_dirty`): an anonymous region, mapped with
//! small, huge or transparent huge pages ([`region`]), prefaulted, then
//! dirtied one byte per 4 KiB page by paced worker threads ([`worker`]) that
//! check every page still holds what they last wrote, while a sampler reports
//! rate, load and access latencies once per interval ([`run`]).

pub mod config;
pub mod data;
mod kernel;
mod pauses;
pub mod region;
pub mod run;
mod worker;

pub use config::{DirtyConfig, Pattern, MAX_THREADS};
pub use data::{DirtyItem, DirtyPause, DirtySample, DirtySummary, Phase};
pub use kernel::{prefault, Kernel, KernelEnv};
pub use region::{PageSize, Region, DIRTY_STEP};
pub use run::DirtyWorkload;
