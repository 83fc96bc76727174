// LSVCR's loss terms against hand computation.
#include "seqrec/train/lsvcr_losses.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

namespace seqrec::train {
namespace {

torch::Tensor t2(std::vector<float> v, int64_t rows) { return torch::tensor(v).view({rows, -1}); }

TEST(LsvcrLossesTest, VideoLossIsFullSoftmaxOverCosinesWithoutThePaddingRow) {
  auto users = t2({3, 0}, 1);
  auto videos = t2({0, 0, 5, 0, 0, 2}, 3);  // row 0 padding; cosines 1 and 0
  auto loss = lsvcr_video_loss(users, videos, torch::tensor({1}, torch::kInt64), 0.5);
  EXPECT_NEAR(loss.item<float>(), std::log(1 + std::exp(-2.0)), 1e-5);  // logits [2, 0]
  auto to_second = lsvcr_video_loss(users, videos, torch::tensor({2}, torch::kInt64), 0.5);
  EXPECT_NEAR(to_second.item<float>(), std::log(1 + std::exp(2.0)), 1e-5);
}

TEST(LsvcrLossesTest, CommentLossRanksThePositiveFirstAmongItsCandidates) {
  auto users = t2({2, 0}, 1);
  auto cands = torch::tensor({1.0f, 0.0f, 0.0f, 3.0f, -1.0f, 0.0f}).view({1, 3, 2});  // cosines 1, 0, -1
  const double e = std::exp(1.0);
  EXPECT_NEAR(lsvcr_comment_loss(users, cands, 1.0).item<float>(), std::log(e + 1 + 1 / e) - 1, 1e-5);
  EXPECT_NEAR(lsvcr_comment_loss(users, cands, 0.5).item<float>(), std::log(e * e + 1 + 1 / (e * e)) - 2, 1e-5);
}

TEST(LsvcrLossesTest, InfoNceAndIdTextLossMatchHandValues) {
  auto a = t2({1, 0, 0, 1}, 2), b = t2({1, 0, 1, 1}, 2);
  const double c = 1 / std::sqrt(2.0);
  // a -> b: cos rows [1, c] (label 0) and [0, c] (label 1).
  const double ab = 0.5 * (std::log(1 + std::exp(c - 1)) + std::log(1 + std::exp(-c)));
  // b -> a: cos rows [1, 0] (label 0) and [c, c] (label 1).
  const double ba = 0.5 * (std::log(1 + std::exp(-1.0)) + std::log(2.0));
  EXPECT_NEAR(info_nce(a, b, 1.0).item<float>(), ab, 1e-5);
  EXPECT_NEAR(info_nce(b, a, 1.0).item<float>(), ba, 1e-5);
  EXPECT_NEAR(lsvcr_id_text_loss(a, b, 1.0).item<float>(), 0.5 * (ab + ba), 1e-5);
  EXPECT_NEAR(info_nce(a, b, 0.07).item<float>(),
              0.5 * (std::log(1 + std::exp((c - 1) / 0.07)) + std::log(1 + std::exp(-c / 0.07))), 1e-4);
}

TEST(LsvcrLossesTest, AlignmentContrastIsBehaviourChoicePlusHalfInfoNceEachWay) {
  auto task = t2({1, 0, 0, 1}, 2), other = t2({0, 1, 1, 0}, 2), llm = t2({1, 0, 1, 1}, 2);
  const double c = 1 / std::sqrt(2.0);
  // Row 0: llm (1,0) scores task 1, other 0. Row 1: llm (c,c) scores both c.
  const double behaviour = 0.5 * (std::log(1 + std::exp(-1.0)) + std::log(2.0));
  const double sr_to_llm = 0.5 * (std::log(1 + std::exp(c - 1)) + std::log(1 + std::exp(-c)));
  const double llm_to_sr = 0.5 * (std::log(1 + std::exp(-1.0)) + std::log(2.0));
  EXPECT_NEAR(lsvcr_alignment_contrast_loss(task, other, llm, 1.0).item<float>(),
              behaviour + 0.5 * sr_to_llm + 0.5 * llm_to_sr, 1e-5);
}

}  // namespace
}  // namespace seqrec::train
