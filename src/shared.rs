//! What every accept loop and connection of a worker shares: the app, the
//! configuration, the open-connection count and the stop signal. A leaf:
//! the modules that serve connections import it, it imports none of them.

use std::sync::Arc;

use crate::access_log::AccessLog;
use crate::board::Board;
use crate::config::Config;
use crate::recycle::Recycler;
use crate::shutdown::{OpenConnections, StopSignal};
use crate::static_files::StaticFiles;
use crate::wsgi::WsgiApp;

/// A worker's shared state, behind one `Arc`.
pub(crate) struct Shared {
    pub app: WsgiApp,
    pub config: Config,
    pub open: Arc<OpenConnections>,
    pub stop: StopSignal,
    /// Every worker's busy count, this one's at `slot`.
    pub board: Board,
    pub slot: usize,
    /// Decides when this worker asks to be replaced.
    pub recycler: Recycler,
    /// `--static-map` and `--internal-map`, mounted.
    pub static_files: StaticFiles,
    /// `--access-log`, when on.
    pub access_log: Option<Arc<AccessLog>>,
}
