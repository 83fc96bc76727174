// Image decoding and preprocessing for item images (stb_image from Debian's libstb-dev).
#include "seqrec/data/image.h"

#include <stb_image.h>
#include <stb_image_write.h>

#include <algorithm>
#include <cmath>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/common/log.h"
#include "seqrec/data/item_catalog.h"

namespace seqrec::data {

Image decode_image(const std::string& bytes, const std::string& origin) {
  int w = 0, h = 0, channels = 0;
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  stbi_uc* pixels = stbi_load_from_memory(data, static_cast<int>(bytes.size()), &w, &h, &channels, 3);
  if (pixels == nullptr) {
    const char* why = stbi_failure_reason();
    throw DataError(origin + ": cannot decode image (" + (why ? why : "unknown reason") + ")");
  }
  Image img;
  img.width = w;
  img.height = h;
  img.rgb.assign(pixels, pixels + static_cast<size_t>(w) * h * 3);
  stbi_image_free(pixels);
  return img;
}

Image read_image(const std::string& path) {
  if (!path_exists(path)) throw DataError(path + ": no such image file");
  return decode_image(read_file(path), path);
}

std::string encode_png(const Image& image) {
  std::string out;
  auto append = [](void* ctx, void* data, int size) { static_cast<std::string*>(ctx)->append(static_cast<char*>(data), size); };
  const int ok = stbi_write_png_to_func(append, &out, static_cast<int>(image.width), static_cast<int>(image.height), 3,
                                        image.rgb.data(), static_cast<int>(image.width * 3));
  if (!ok) throw Error("encode_png: stb_image_write failed");
  return out;
}

std::vector<float> preprocess_image(const Image& image, const ImagePreprocessOptions& o) {
  const int64_t s = o.size, w = image.width, h = image.height;
  std::vector<float> out(static_cast<size_t>(3 * s * s));
  const double sy = static_cast<double>(h) / s, sx = static_cast<double>(w) / s;
  for (int64_t y = 0; y < s; ++y) {
    // Half-pixel centres, clamped at the edges (torch bilinear, align_corners=False).
    const double fy = std::max(0.0, (y + 0.5) * sy - 0.5);
    const int64_t y0 = std::min<int64_t>(static_cast<int64_t>(fy), h - 1), y1 = std::min<int64_t>(y0 + 1, h - 1);
    const double wy = fy - y0;
    for (int64_t x = 0; x < s; ++x) {
      const double fx = std::max(0.0, (x + 0.5) * sx - 0.5);
      const int64_t x0 = std::min<int64_t>(static_cast<int64_t>(fx), w - 1), x1 = std::min<int64_t>(x0 + 1, w - 1);
      const double wx = fx - x0;
      for (int64_t c = 0; c < 3; ++c) {
        const double v = (1 - wy) * ((1 - wx) * image.at(y0, x0, c) + wx * image.at(y0, x1, c)) +
                         wy * ((1 - wx) * image.at(y1, x0, c) + wx * image.at(y1, x1, c));
        out[static_cast<size_t>((c * s + y) * s + x)] = static_cast<float>((v * o.rescale - o.mean[c]) / o.std[c]);
      }
    }
  }
  return out;
}

std::string find_item_image(const std::string& folder, const std::string& raw_id) {
  for (const char* ext : {".png", ".jpg", ".jpeg"}) {
    std::string p = folder + "/" + raw_id + ext;
    if (path_exists(p)) return p;
  }
  return "";
}

std::vector<float> load_item_images(const ItemCatalog& catalog, const std::string& folder,
                                    const ImagePreprocessOptions& options, bool allow_missing) {
  const int64_t v = catalog.num_items(), per = 3 * options.size * options.size;
  std::vector<float> out(static_cast<size_t>(v * per), 0.0f);
  int64_t skipped = 0;
  std::string first_skip;
  for (int64_t id = 1; id <= v; ++id) {
    const std::string& raw = catalog.raw_id(id);
    const std::string who = "item " + std::to_string(id) + " (raw id '" + raw + "')";
    const std::string path = find_item_image(folder, raw);
    try {
      if (path.empty())
        throw DataError(who + ": no image " + folder + "/" + raw + ".{png,jpg,jpeg}" +
                        (allow_missing ? "" : " (set allow_missing: true to embed such items without one)"));
      std::vector<float> px = preprocess_image(read_image(path), options);
      std::copy(px.begin(), px.end(), out.begin() + (id - 1) * per);
    } catch (const DataError& e) {
      if (!allow_missing) throw DataError(path.empty() ? e.what() : who + ": " + e.what());
      if (skipped++ == 0) first_skip = e.what();
    }
  }
  if (skipped > 0)
    log_warn("%ld of %ld items have no usable image in %s (zeros instead; first: %s)", long(skipped), long(v),
             folder.c_str(), first_skip.c_str());
  return out;
}

}  // namespace seqrec::data
