//! The `rwsgi._rwsgi` extension module: `serve()` and the classes the WSGI
//! bridge hands to apps, and `RequestTimeout`. Everything else lives in the
//! modules below.

mod access_log;
mod board;
mod body;
mod body_reader;
mod capacity;
mod clock;
mod config;
mod connection;
mod counters;
mod deadline;
mod error;
mod finished;
mod harakiri;
mod health;
mod http;
mod log;
mod master;
mod net;
mod proctitle;
mod recycle;
mod refusal;
mod request;
mod response;
mod server;
mod shared;
mod shutdown;
mod static_files;
mod stats;
mod uwsgi;
mod worker;
mod wsgi;

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Run the master until it stops. `app` is a preloaded WSGI callable, or
/// `loader` a zero-argument callable each worker calls to import it.
#[pyfunction]
#[pyo3(signature = (app, loader, label, options))]
fn serve(
    py: Python<'_>,
    app: Option<Py<PyAny>>,
    loader: Option<Py<PyAny>>,
    label: String,
    options: &Bound<'_, PyDict>,
) -> PyResult<()> {
    if app.is_none() && loader.is_none() {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "serve() needs an app or a loader",
        ));
    }
    let config = config::Config::from_dict(options, label)?;
    log::configure(
        config.log_level,
        config.log_json,
        config.log_file.as_deref(),
    )
    .map_err(|error| error::Error::Config {
        option: "log_file",
        message: format!("cannot open it: {error}"),
    })?;
    let arbiter = master::Arbiter::new(config, app, loader)?;
    arbiter.run(py)?;
    Ok(())
}

#[pymodule]
fn _rwsgi(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_function(wrap_pyfunction!(serve, module)?)?;
    module.add_class::<wsgi::file_wrapper::FileWrapper>()?;
    module.add_class::<wsgi::input::Input>()?;
    module.add_class::<wsgi::errors::ErrorStream>()?;
    module.add_function(wrap_pyfunction!(wsgi::errors::log_line, module)?)?;
    module.add_function(wrap_pyfunction!(wsgi::errors::log_level, module)?)?;
    module.add_class::<wsgi::start_response::StartResponse>()?;
    module.add(
        "RequestTimeout",
        module.py().get_type::<wsgi::timeout::RequestTimeout>(),
    )?;
    Ok(())
}
