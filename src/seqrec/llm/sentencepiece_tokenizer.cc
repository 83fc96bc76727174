#include "seqrec/llm/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include <stdexcept>

#include "seqrec/common/error.h"

namespace seqrec::llm {

struct SentencePieceTokenizer::Impl {
  sentencepiece::SentencePieceProcessor processor;
};

SentencePieceTokenizer::SentencePieceTokenizer(const std::string& model_path)
    : impl_(std::make_unique<Impl>()) {
  const auto status = impl_->processor.Load(model_path);
  if (!status.ok()) {
    throw DataError(model_path + ": cannot load SentencePiece model: " + status.ToString());
  }
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::vector<int64_t> SentencePieceTokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  const auto status = impl_->processor.Encode(text, &ids);
  if (!status.ok()) throw RequestError("SentencePiece encode failed: " + status.ToString());
  return {ids.begin(), ids.end()};
}

std::string SentencePieceTokenizer::decode(const std::vector<int64_t>& ids) const {
  const auto& sp = impl_->processor;
  const int size = sp.GetPieceSize();
  std::vector<int> kept;
  kept.reserve(ids.size());
  for (int64_t id : ids) {
    if (id < 0 || id >= size) throw std::out_of_range("token id " + std::to_string(id) + " out of range");
    if (id == sp.bos_id() || id == sp.eos_id() || id == sp.pad_id()) continue;
    kept.push_back(static_cast<int>(id));
  }
  std::string text;
  const auto status = sp.Decode(kept, &text);
  if (!status.ok()) throw RequestError("SentencePiece decode failed: " + status.ToString());
  return text;
}

int64_t SentencePieceTokenizer::vocab_size() const { return impl_->processor.GetPieceSize(); }

int64_t SentencePieceTokenizer::bos_id() const { return impl_->processor.bos_id(); }

int64_t SentencePieceTokenizer::eos_id() const { return impl_->processor.eos_id(); }

std::string SentencePieceTokenizer::id_to_piece(int64_t id) const {
  if (id < 0 || id >= vocab_size()) {
    throw std::out_of_range("token id " + std::to_string(id) + " out of range");
  }
  return impl_->processor.IdToPiece(static_cast<int>(id));
}

int64_t SentencePieceTokenizer::piece_to_id(const std::string& piece) const {
  const auto& sp = impl_->processor;
  const int id = sp.PieceToId(piece);
  // PieceToId answers unk for unknown pieces; only the unk piece itself really has that id.
  if (id == sp.unk_id() && sp.IdToPiece(id) != piece) return -1;
  return id;
}

}  // namespace seqrec::llm
