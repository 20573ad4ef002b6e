pub use kstreams_runtime as runtime;
