// Item images: decode (PNG, JPEG), preprocessing against hand values, per-item lookup and its
// errors, and the synthetic pictures.
#include "seqrec/data/image.h"

#include <gtest/gtest.h>
#include <stb/stb_image_write.h>

#include <cmath>

#include "seqrec/common/error.h"
#include "seqrec/common/fs.h"
#include "seqrec/data/item_catalog.h"
#include "seqrec/data/synthetic.h"
#include "seqrec/data/synthetic_images.h"
#include "support.h"

namespace seqrec::data {
namespace {

using seqrec::testing::TempDir;

Image solid(int64_t w, int64_t h, uint8_t r, uint8_t g, uint8_t b) {
  Image img;
  img.width = w;
  img.height = h;
  img.rgb.resize(static_cast<size_t>(w * h * 3));
  for (int64_t i = 0; i < w * h; ++i) {
    img.rgb[i * 3] = r;
    img.rgb[i * 3 + 1] = g;
    img.rgb[i * 3 + 2] = b;
  }
  return img;
}

float norm(double v) { return static_cast<float>((v / 255.0 - 0.5) / 0.5); }

TEST(ImageTest, PngRoundTripsAndJpegDecodes) {
  Image img = solid(3, 2, 10, 20, 30);
  img.rgb[3 * 4 + 1] = 250;  // pixel (1, 1), green
  Image back = decode_image(encode_png(img), "mem.png");
  EXPECT_EQ(back.width, 3);
  EXPECT_EQ(back.height, 2);
  EXPECT_EQ(back.rgb, img.rgb);
  EXPECT_EQ(back.at(1, 1, 1), 250);
  // A solid JPEG decodes to (nearly) its colour.
  std::string jpeg;
  Image big = solid(16, 16, 200, 100, 50);
  stbi_write_jpg_to_func([](void* ctx, void* data, int size) { static_cast<std::string*>(ctx)->append(static_cast<char*>(data), size); },
                         &jpeg, 16, 16, 3, big.rgb.data(), 95);
  Image j = decode_image(jpeg, "mem.jpg");
  ASSERT_EQ(j.width, 16);
  EXPECT_NEAR(j.at(8, 8, 0), 200, 3);
  EXPECT_NEAR(j.at(8, 8, 1), 100, 3);
  EXPECT_NEAR(j.at(8, 8, 2), 50, 3);
  ASSERT_THROWS_WITH(decode_image("not an image", "x.png"), "x.png: cannot decode image (");
  ASSERT_THROWS_WITH(read_image("/nonexistent/y.png"), "/nonexistent/y.png: no such image file");
}

TEST(ImageTest, PreprocessResizesBilinearAndNormalisesLikeTheHandValues) {
  // One row [0, 200] (all channels) upsampled to 4 columns: half-pixel centres give
  // x = 0 -> 0, 1 -> 0.75*0 + 0.25*200 = 50, 2 -> 150, 3 -> 200 (clamped).
  Image img;
  img.width = 2;
  img.height = 2;
  img.rgb = {0, 0, 0, 200, 200, 200, 0, 0, 0, 200, 200, 200};
  ImagePreprocessOptions o;
  o.size = 4;
  auto px = preprocess_image(img, o);
  ASSERT_EQ(px.size(), 3u * 4 * 4);
  const double want[4] = {0, 50, 150, 200};
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < 4; ++y)
      for (int64_t x = 0; x < 4; ++x) EXPECT_NEAR(px[(c * 4 + y) * 4 + x], norm(want[x]), 1e-6) << c << y << x;
  // Downsampling 4 -> 2 averages pixel pairs (centre at 0.5); per-channel mean/std apply.
  Image four = solid(4, 1, 0, 0, 0);
  for (int64_t x = 0; x < 4; ++x) four.rgb[x * 3] = static_cast<uint8_t>(40 * x);  // red 0 40 80 120
  o.size = 2;
  o.mean = {0.1, 0.2, 0.3};
  o.std = {0.5, 0.25, 2.0};
  auto small = preprocess_image(four, o);
  EXPECT_NEAR(small[0], (20 / 255.0 - 0.1) / 0.5, 1e-6);   // red, (0, 0)
  EXPECT_NEAR(small[1], (100 / 255.0 - 0.1) / 0.5, 1e-6);  // red, (0, 1)
  EXPECT_NEAR(small[4], (0 - 0.2) / 0.25, 1e-6);           // green, (0, 0)
  EXPECT_NEAR(small[8 + 3], (0 - 0.3) / 2.0, 1e-6);        // blue, (1, 1)
}

TEST(ImageTest, ItemImagesByRawIdWithClearErrorsOrLoggedSkips) {
  TempDir dir;
  dir.write("items.tsv", "item_id\traw_id\ttitle\n1\ta7\tRed\n2\tb9\tBlue\n3\tc1\tGreen\n");
  make_dirs(dir.file("img"));
  dir.write("img/a7.png", encode_png(solid(2, 2, 255, 0, 0)));
  dir.write("img/b9.jpg", encode_png(solid(2, 2, 0, 0, 255)));  // a PNG named .jpg decodes by content
  auto catalog = ItemCatalog::load(dir.path());
  ImagePreprocessOptions o;
  o.size = 2;
  ASSERT_THROWS_WITH(load_item_images(catalog, dir.file("img"), o, false),
                     "item 3 (raw id 'c1'): no image " + dir.file("img") + "/c1.{png,jpg,jpeg}");
  dir.write("img/c1.png", "garbage");
  ASSERT_THROWS_WITH(load_item_images(catalog, dir.file("img"), o, false),
                     "item 3 (raw id 'c1'): " + dir.file("img/c1.png") + ": cannot decode image");
  auto px = load_item_images(catalog, dir.file("img"), o, true);  // item 3 skipped: zeros
  ASSERT_EQ(px.size(), 3u * 12);
  EXPECT_NEAR(px[0], norm(255), 1e-6);       // item 1 red channel
  EXPECT_NEAR(px[12 + 8], norm(255), 1e-6);  // item 2 blue channel
  for (int k = 24; k < 36; ++k) EXPECT_EQ(px[k], 0.0f);
}

TEST(ImageTest, SyntheticPicturesShowClusterHueAndPopularityShape) {
  uint8_t rgb[3];
  hue_rgb(0.0, rgb);  // red at s 0.6 v 0.9: (229.5, 91.8, 91.8) rounded
  EXPECT_EQ(rgb[0], 230);
  EXPECT_EQ(rgb[1], 92);
  EXPECT_EQ(rgb[2], 92);
  Image circle = render_item_image(0, 4, SynthShape::kCircle, 16);
  Image square = render_item_image(0, 4, SynthShape::kSquare, 16);
  Image other = render_item_image(2, 4, SynthShape::kCircle, 16);
  EXPECT_EQ(circle.at(0, 0, 0), 230);                  // background: cluster 0's hue
  uint8_t fg[3];
  hue_rgb(0.5, fg);
  EXPECT_EQ(circle.at(8, 8, 2), fg[2]);                // centre: the complementary hue
  EXPECT_EQ(square.at(4, 4, 2), fg[2]);                // a square's corner ...
  EXPECT_EQ(circle.at(4, 4, 2), rgb[2]);               // ... lies outside the circle
  EXPECT_NE(other.at(0, 0, 0), circle.at(0, 0, 0));    // another cluster, another background
  // synth writes one decodable PNG per item.
  TempDir dir;
  SynthOptions s;
  s.num_users = 20;
  s.num_items = 12;
  s.num_clusters = 3;
  s.min_seq_len = 2;
  s.max_seq_len = 5;
  s.image_size = 8;
  s.output = dir.path();
  generate_synthetic(s);
  for (int i = 1; i <= 12; ++i) {
    Image img = read_image(dir.file("images/i" + std::to_string(i) + ".png"));
    EXPECT_EQ(img.width, 8);
    EXPECT_EQ(img.height, 8);
  }
  // Items of one cluster share the background; shapes follow popularity (three distinct among 4 items).
  EXPECT_EQ(read_image(dir.file("images/i1.png")).rgb[0], read_image(dir.file("images/i4.png")).rgb[0]);
}

}  // namespace
}  // namespace seqrec::data
