// Item images: decoding (JPEG / PNG / BMP / GIF through stb_image), PNG encoding, and the
// preprocessing a vision tower expects (resize, rescale, normalise) -- all without torch.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace seqrec::data {

/// An 8-bit RGB image, row-major HWC.
struct Image {
  int64_t width = 0;
  int64_t height = 0;
  std::vector<uint8_t> rgb;  ///< [height, width, 3]
  /// Channel c of pixel (y, x).
  uint8_t at(int64_t y, int64_t x, int64_t c) const { return rgb[static_cast<size_t>((y * width + x) * 3 + c)]; }
};

/// Decodes an image file's bytes to RGB (grey and RGBA are converted). Throws DataError
/// "<origin>: cannot decode image (<stb's reason>)".
Image decode_image(const std::string& bytes, const std::string& origin);
/// Reads and decodes `path`; DataError names the path when it is missing or not an image.
Image read_image(const std::string& path);
/// The PNG encoding of an image.
std::string encode_png(const Image& image);

/// How a vision tower wants its pixels (HF preprocessor_config.json: size, image_mean, image_std,
/// rescale_factor).
struct ImagePreprocessOptions {
  int64_t size = 224;                                   ///< output is size x size
  double rescale = 1.0 / 255.0;                         ///< bytes -> [0, 1]
  std::array<double, 3> mean = {0.5, 0.5, 0.5};         ///< per-channel mean (after rescale)
  std::array<double, 3> std = {0.5, 0.5, 0.5};          ///< per-channel std
};

/// Bilinear resize to size x size with half-pixel centres and edge clamping (torch's
/// interpolate(mode="bilinear", align_corners=False, antialias=False)), then
/// (v * rescale - mean[c]) / std[c]. Returns [3, size, size] channel-major floats.
std::vector<float> preprocess_image(const Image& image, const ImagePreprocessOptions& options);

/// The image of an item inside `folder`: <folder>/<raw_id>.png, .jpg or .jpeg (first that exists),
/// "" when there is none.
std::string find_item_image(const std::string& folder, const std::string& raw_id);

class ItemCatalog;

/// Preprocessed pictures of items 1..V found in `folder` by raw id (find_item_image):
/// [V, 3, size, size] floats, item i at row i - 1. An item without a picture, or whose picture does
/// not decode, throws DataError naming the item (dense and raw id) and the file -- unless
/// `allow_missing`: then its rows stay zero and one warning counts the skipped items.
std::vector<float> load_item_images(const ItemCatalog& catalog, const std::string& folder,
                                    const ImagePreprocessOptions& options, bool allow_missing);

}  // namespace seqrec::data
