// Rendering of synthetic item pictures (see synthetic_images.h).
#include "seqrec/data/synthetic_images.h"

#include <cmath>

namespace seqrec::data {

void hue_rgb(double h, uint8_t rgb[3]) {
  const double s = 0.6, v = 0.9;
  const double hh = std::fmod(h, 1.0) * 6.0;
  const int64_t sector = static_cast<int64_t>(hh) % 6;
  const double f = hh - std::floor(hh);
  const double p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  double r = v, g = t, b = p;
  switch (sector) {
    case 1: r = q; g = v; b = p; break;
    case 2: r = p; g = v; b = t; break;
    case 3: r = p; g = q; b = v; break;
    case 4: r = t; g = p; b = v; break;
    case 5: r = v; g = p; b = q; break;
    default: break;
  }
  rgb[0] = static_cast<uint8_t>(std::lround(r * 255));
  rgb[1] = static_cast<uint8_t>(std::lround(g * 255));
  rgb[2] = static_cast<uint8_t>(std::lround(b * 255));
}

namespace {

// Whether pixel (y, x) of a size x size picture lies inside the shape (centred, half the side).
bool inside(SynthShape shape, int64_t y, int64_t x, int64_t size) {
  const double c = (size - 1) / 2.0, r = size / 4.0;
  const double dy = y - c, dx = x - c;
  switch (shape) {
    case SynthShape::kCircle: return dx * dx + dy * dy <= r * r;
    case SynthShape::kSquare: return std::fabs(dx) <= r && std::fabs(dy) <= r;
    case SynthShape::kTriangle:  // apex up, base at c + r
      return dy >= -r && dy <= r && std::fabs(dx) <= (dy + r) / 2;
  }
  return false;
}

}  // namespace

Image render_item_image(int64_t cluster, int64_t num_clusters, SynthShape shape, int64_t size) {
  const double hue = static_cast<double>(cluster) / static_cast<double>(num_clusters);
  uint8_t bg[3], fg[3];
  hue_rgb(hue, bg);
  hue_rgb(hue + 0.5, fg);
  Image img;
  img.width = img.height = size;
  img.rgb.resize(static_cast<size_t>(size * size * 3));
  for (int64_t y = 0; y < size; ++y)
    for (int64_t x = 0; x < size; ++x) {
      const uint8_t* col = inside(shape, y, x, size) ? fg : bg;
      for (int64_t k = 0; k < 3; ++k) img.rgb[static_cast<size_t>((y * size + x) * 3 + k)] = col[k];
    }
  return img;
}

}  // namespace seqrec::data
