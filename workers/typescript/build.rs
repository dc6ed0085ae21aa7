// Linker set-up for a Node addon (a no-op on Linux, needed on macOS).
fn main() {
    napi_build::setup();
}
