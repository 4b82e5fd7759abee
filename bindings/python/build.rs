//! Sets pyo3's `Py_3_*` cfgs and the libpython rpath for `cargo test`.
fn main() {
    pyo3_build_config::use_pyo3_cfgs();
    pyo3_build_config::add_libpython_rpath_link_args();
}
