// Pictures of synthetic items (`synth.image_size`): what the image path of Molar learns from.
//
// The background's hue is the item's cluster (which its tag and title words also give away); the
// centred shape is its popularity tercile inside the cluster (circle = most popular third, square,
// triangle = least popular), which no text field reveals; the shape is drawn in the complementary
// colour. Deterministic: no randomness.
#pragma once

#include <cstdint>

#include "seqrec/data/image.h"

namespace seqrec::data {

/// Shapes, by popularity tercile.
enum class SynthShape { kCircle = 0, kSquare = 1, kTriangle = 2 };

/// An RGB size x size picture of an item of `cluster` (0..num_clusters-1) with `shape`.
Image render_item_image(int64_t cluster, int64_t num_clusters, SynthShape shape, int64_t size);

/// The RGB of hue h in [0, 1) at saturation 0.6, value 0.9.
void hue_rgb(double h, uint8_t rgb[3]);

}  // namespace seqrec::data
