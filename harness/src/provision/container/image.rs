//! Which PostgreSQL image the container backend runs, and the error when
//! there is none.
//!
//! A module of its own because it is the one part of the backend that
//! `auto` uses to decide (no image means a local cluster), and because
//! images are never pulled: what is asked of the engine here is only
//! whether an image is already present.

use anyhow::anyhow;

use crate::provision::docker::DockerEngine;
use crate::provision::ProvisionOptions;

/// Which image to run, and why that one.
pub(crate) struct ImageChoice {
    pub image: String,
    pub why: String,
}

/// `options.image` if present, else `options.fallback_image` if present,
/// else `None`.
pub(crate) async fn choose_image(
    engine: &DockerEngine,
    options: &ProvisionOptions,
) -> anyhow::Result<Option<ImageChoice>> {
    if engine.has_image(&options.image).await? {
        return Ok(Some(ImageChoice {
            image: options.image.clone(),
            why: format!("image {} is present", options.image),
        }));
    }
    if engine.has_image(&options.fallback_image).await? {
        return Ok(Some(ImageChoice {
            image: options.fallback_image.clone(),
            why: format!(
                "image {} is not present, {} is",
                options.image, options.fallback_image
            ),
        }));
    }
    Ok(None)
}

/// The error for "neither image is present", with what to run.
pub(crate) fn no_image_error(options: &ProvisionOptions) -> anyhow::Error {
    anyhow!(
        "neither {} nor {} is present in the local Docker engine, and images are never pulled \
         (this machine reaches no registry); build {} from Debian's packages with \
         `scripts/pg-image` (or `cargo make pg-image`), `docker pull {}` where a registry is \
         reachable, or use --postgres local",
        options.image,
        options.fallback_image,
        options.fallback_image,
        options.image
    )
}
