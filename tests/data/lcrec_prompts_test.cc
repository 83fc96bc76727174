// LC-Rec templates: counts and texts as upstream prompt.py, placeholder sets, str.format rendering,
// the Alpaca wrapper and upstream's title cleaning.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <set>
#include <string>

#include "seqrec/common/error.h"
#include "seqrec/data/lcrec_prompts.h"
#include "support.h"

namespace {

using namespace seqrec::data;

const char* kHeader =
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\n\n### Instruction:\n";

TEST(LcRecPromptsTest, TemplateCountsAreUpstreams) {
  // prompt.py (e6f1b3b): fusionseqrec has 12 templates (ids 0..11), not the 11 systems.md lists.
  EXPECT_EQ(lcrec_templates(LcRecTask::kSeqRec).size(), 17);
  EXPECT_EQ(lcrec_templates(LcRecTask::kItem2Index).size(), 19);
  EXPECT_EQ(lcrec_templates(LcRecTask::kIndex2Item).size(), 17);
  EXPECT_EQ(lcrec_templates(LcRecTask::kFusionSeqRec).size(), 12);
  EXPECT_EQ(lcrec_templates(LcRecTask::kItemSearch).size(), 11);
  EXPECT_EQ(lcrec_templates(LcRecTask::kPreferenceObtain).size(), 11);
}

TEST(LcRecPromptsTest, AlpacaWrapperEndsAtResponseColon) {
  EXPECT_EQ(alpaca_prompt("Do {this}."), std::string(kHeader) + "Do {this}.\n\n### Response:");
  std::ifstream in(std::string(SEQREC_SOURCE_DIR) + "/tests/fixtures/lcrec/golden.json");
  ASSERT_TRUE(in) << "missing tests/fixtures/lcrec/golden.json";
  const auto golden = nlohmann::json::parse(in);
  EXPECT_EQ(std::string(kLcRecSftPrompt), golden["sft_prompt"].get<std::string>());
}

TEST(LcRecPromptsTest, OneTemplatePerTaskRendersToUpstreamText) {
  PromptValues v;
  v.item = "<a_1><b_2><c_3><d_4>";
  v.inters = "<a_5><b_6><c_7><d_8>, <a_9><b_1><c_2><d_3>";
  v.title = "Boss Tuner";
  v.description = "Chromatic pedal";
  v.inter_titles = "\"Picks\", \"Strings\"";
  v.explicit_preference = "Likes bright tone.";
  v.user_related_intention = "wants a tuner";
  v.item_related_intention = "small pedal";
  v.query = "a tuner pedal";

  RenderedPrompt r = render_prompt(lcrec_templates(LcRecTask::kSeqRec)[0], v);
  EXPECT_EQ(r.prompt, std::string(kHeader) +
                          "The user has interacted with items <a_5><b_6><c_7><d_8>, <a_9><b_1><c_2><d_3> in chronological "
                          "order. Can you predict the next possible item that the user may expect?\n\n### Response:");
  EXPECT_EQ(r.response, "<a_1><b_2><c_3><d_4>");

  r = render_prompt(lcrec_templates(LcRecTask::kItem2Index)[12], v);
  EXPECT_EQ(r.prompt, std::string(kHeader) +
                          "An item is called \"Boss Tuner\" and described as \"Chromatic pedal\", can you tell me which "
                          "item it is?\n\n### Response:");
  EXPECT_EQ(r.response, "<a_1><b_2><c_3><d_4>");

  r = render_prompt(lcrec_templates(LcRecTask::kIndex2Item)[12], v);
  EXPECT_EQ(r.prompt, std::string(kHeader) + "What is the title and description of item <a_1><b_2><c_3><d_4>?\n\n### Response:");
  EXPECT_EQ(r.response, "Boss Tuner\n\nChromatic pedal");

  r = render_prompt(lcrec_templates(LcRecTask::kFusionSeqRec)[0], v);  // ends with a full-width question mark
  EXPECT_EQ(r.prompt, std::string(kHeader) +
                          "The user has sequentially interacted with items <a_5><b_6><c_7><d_8>, <a_9><b_1><c_2><d_3>. "
                          "Can you recommend the next item for him? Tell me the title of the item\xef\xbc\x9f"
                          "\n\n### Response:");
  EXPECT_EQ(r.response, "Boss Tuner");
  r = render_prompt(lcrec_templates(LcRecTask::kFusionSeqRec)[10], v);
  EXPECT_EQ(r.prompt, std::string(kHeader) +
                          "Considering the title sequence of user history interaction items: \"Picks\", \"Strings\". "
                          "What is the next recommendation for the user?\n\n### Response:");

  r = render_prompt(lcrec_templates(LcRecTask::kItemSearch)[4], v);
  EXPECT_EQ(r.prompt, std::string(kHeader) +
                          "The user needs a new item and searches for: \"a tuner pedal\". In addition, he has previously "
                          "interacted with: <a_5><b_6><c_7><d_8>, <a_9><b_1><c_2><d_3>. You can obtain his preference by "
                          "analyzing his historical interactions: \"Likes bright tone.\". Can you recommend an item that "
                          "best matches the search query and preferences?\n\n### Response:");
  EXPECT_EQ(r.response, "<a_1><b_2><c_3><d_4>");

  // Id 2 is upstream's "#####——3": prompt.py has no "#####——2" in this task.
  r = render_prompt(lcrec_templates(LcRecTask::kPreferenceObtain)[2], v);
  EXPECT_EQ(r.prompt, std::string(kHeader) +
                          "Can you provide a summary of the user's preferences based on his historical interactions: "
                          "<a_5><b_6><c_7><d_8>, <a_9><b_1><c_2><d_3>?\n\n### Response:");
  EXPECT_EQ(r.response, "Likes bright tone.");
}

// The placeholder set of every template, range by range as prompt.py groups them.
TEST(LcRecPromptsTest, EveryTemplateUsesTheFieldsOfItsGroup) {
  auto expect_fields = [](LcRecTask task, int64_t from, int64_t to, uint32_t fields) {
    for (int64_t t = from; t <= to; ++t)
      EXPECT_EQ(template_fields(lcrec_templates(task)[t]), fields) << lcrec_task_name(task) << " template " << t;
  };
  expect_fields(LcRecTask::kSeqRec, 0, 16, kFieldInters | kFieldItem);
  expect_fields(LcRecTask::kItem2Index, 0, 5, kFieldTitle | kFieldItem);
  expect_fields(LcRecTask::kItem2Index, 6, 11, kFieldDescription | kFieldItem);
  expect_fields(LcRecTask::kItem2Index, 12, 18, kFieldTitle | kFieldDescription | kFieldItem);
  expect_fields(LcRecTask::kIndex2Item, 0, 5, kFieldItem | kFieldTitle);
  expect_fields(LcRecTask::kIndex2Item, 6, 11, kFieldItem | kFieldDescription);
  expect_fields(LcRecTask::kIndex2Item, 12, 16, kFieldItem | kFieldTitle | kFieldDescription);
  expect_fields(LcRecTask::kFusionSeqRec, 0, 3, kFieldInters | kFieldTitle);
  expect_fields(LcRecTask::kFusionSeqRec, 4, 7, kFieldInters | kFieldDescription);
  expect_fields(LcRecTask::kFusionSeqRec, 8, 11, kFieldInterTitles | kFieldItem);
  expect_fields(LcRecTask::kItemSearch, 0, 0, kFieldInters | kFieldExplicitPreference | kFieldItem);
  expect_fields(LcRecTask::kItemSearch, 1, 1, kFieldInters | kFieldUserRelatedIntention | kFieldItem);
  expect_fields(LcRecTask::kItemSearch, 2, 2, kFieldInters | kFieldItemRelatedIntention | kFieldItem);
  expect_fields(LcRecTask::kItemSearch, 3, 5, kFieldQuery | kFieldInters | kFieldExplicitPreference | kFieldItem);
  expect_fields(LcRecTask::kItemSearch, 6, 10, kFieldQuery | kFieldItem);
  expect_fields(LcRecTask::kPreferenceObtain, 0, 10, kFieldInters | kFieldExplicitPreference);
}

// Every template of every task, rendered with a distinct marker per field: each field it uses
// appears, nothing of a field it does not use, and no brace is left.
TEST(LcRecPromptsTest, EveryTemplateRendersAllItsPlaceholders) {
  PromptValues v{"@ITEM@", "@INTERS@", "@TITLE@", "@DESC@", "@ITITLES@", "@PREF@", "@UINT@", "@IINT@", "@QUERY@"};
  const std::pair<uint32_t, const char*> markers[] = {
      {kFieldItem, "@ITEM@"},        {kFieldInters, "@INTERS@"},      {kFieldTitle, "@TITLE@"},
      {kFieldDescription, "@DESC@"}, {kFieldInterTitles, "@ITITLES@"}, {kFieldExplicitPreference, "@PREF@"},
      {kFieldUserRelatedIntention, "@UINT@"}, {kFieldItemRelatedIntention, "@IINT@"}, {kFieldQuery, "@QUERY@"}};
  int64_t rendered = 0;
  for (LcRecTask task : kLcRecTasks) {
    const auto templates = lcrec_templates(task);
    for (int64_t t = 0; t < templates.size(); ++t) {
      const uint32_t fields = template_fields(templates[t]);
      const RenderedPrompt r = render_prompt(templates[t], v);
      const std::string all = r.prompt + r.response;
      for (const auto& [bit, marker] : markers)
        EXPECT_EQ(all.find(marker) != std::string::npos, (fields & bit) != 0)
            << lcrec_task_name(task) << " " << t << " " << marker;
      EXPECT_EQ(all.find_first_of("{}"), std::string::npos) << lcrec_task_name(task) << " " << t;
      EXPECT_FALSE(r.response.empty());
      EXPECT_EQ(r.prompt.rfind(kHeader, 0), 0u);
      ++rendered;
    }
  }
  EXPECT_EQ(rendered, 17 + 19 + 17 + 12 + 11 + 11);
}

TEST(LcRecPromptsTest, RenderIsOnePassStrFormat) {
  PromptValues v;
  v.title = "a {item} and }{ in a title";
  v.item = "<a_1>";
  EXPECT_EQ(render_template("T: {title} / {item} {{x}}", v), "T: a {item} and }{ in a title / <a_1> {x}");
  ASSERT_THROWS_WITH(render_template("{nope}", v), "unknown placeholder {nope}");
  ASSERT_THROWS_WITH(render_template("open {title", v), "unclosed '{'");
  ASSERT_THROWS_WITH(render_template("close } here", v), "single '}'");
}

TEST(LcRecPromptsTest, CleanTitleIsPythonStripThenStripPunctuation) {
  // Expected values printed by Python: s.strip().strip(".!?,;:`").
  EXPECT_EQ(clean_title("  Ernie Ball Strings!  "), "Ernie Ball Strings");
  EXPECT_EQ(clean_title(" . abc"), " abc");
  EXPECT_EQ(clean_title("abc. "), "abc");
  EXPECT_EQ(clean_title("...!"), "");
  EXPECT_EQ(clean_title("Strap ..., ;"), "Strap ..., ");
  EXPECT_EQ(clean_title("`Shure SM58`"), "Shure SM58");
  EXPECT_EQ(clean_title("Capo\xc2\xa0"), "Capo");                              // U+00A0
  EXPECT_EQ(clean_title("\xe3\x80\x80Title\xe3\x80\x80"), "Title");            // U+3000
  EXPECT_EQ(clean_title("\x1f" "A\xc2\x85"), "A");                             // \x1f, U+0085
  EXPECT_EQ(clean_title(" \xe2\x80\x89x.\xe2\x80\xaf"), "x");                  // U+2009, U+202F
  EXPECT_EQ(clean_title("Caf\xc3\xa9 Ukulele?"), "Caf\xc3\xa9 Ukulele");
}

TEST(LcRecPromptsTest, TaskNamesParseCaseInsensitively) {
  for (LcRecTask t : kLcRecTasks) EXPECT_EQ(parse_lcrec_task(lcrec_task_name(t), "x"), t);
  EXPECT_EQ(parse_lcrec_task("SeqRec", "x"), LcRecTask::kSeqRec);
  ASSERT_THROWS_WITH(parse_lcrec_task("seqrek", "lcrec.tasks[0]"),
                     "lcrec.tasks[0]: unknown LC-Rec task 'seqrek' (expected one of seqrec, item2index");
}

}  // namespace
