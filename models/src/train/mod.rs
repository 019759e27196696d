//! The pieces every training command shares: a run directory with JSONL metrics and the
//! resolved recipe, a progress bar, PNG sample grids, and TOML recipes whose fields are all
//! defaulted and can be overridden from the command line.

pub mod grid;
pub mod recipe;
pub mod run;

pub use grid::save_grid;
pub use recipe::{apply_overrides, load_recipe, RecipeError};
pub use run::{progress_bar, MetricsLog};
