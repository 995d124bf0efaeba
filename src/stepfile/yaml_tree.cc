#include "stepfile/yaml_tree.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <map>
#include <new>
#include <optional>
#include <set>
#include <sstream>

#include "stepfile/stepfile.h"
#include "stepfile/yaml_text.h"

namespace sr::stepfile::internal {
namespace {

// Thrown from inside the event handler to abandon the parse; yaml-cpp only unwinds through it.
struct Stop {
  std::string message;
  int line = 0;
  int column = 0;
};

int OneBased(int zero_based) { return zero_based < 0 ? 0 : zero_based + 1; }

class Builder : public YAML::EventHandler {
 public:
  Builder(Tree& tree, size_t max_documents, const std::string& too_many, std::string_view text)
      : tree_(tree), max_documents_(max_documents), too_many_(too_many), text_(text) {}

  void OnDocumentStart(const YAML::Mark& mark) override {
    // Anchors are scoped to their document.
    anchors_.clear();
    if (tree_.documents.size() >= max_documents_) {
      // Go's decoder never reads past the documents it wants, so an empty one there (a trailing
      // `---`) is no error: one too many is refused only once its root shows it holds a value
      // (Attach). Without a `---`, yaml-cpp starts a document where a line cannot continue the
      // one above (a key after a top-level list): "another one starts here" alone pointed at no
      // `---`.
      const bool marker = mark.pos >= 0 && text_.substr(static_cast<size_t>(mark.pos)).starts_with("---");
      extra_ = Stop{too_many_ + (marker ? "" : " (no `---` here: this line cannot continue the document above it)"),
                    OneBased(mark.line), OneBased(mark.column)};
      return;
    }
    tree_.documents.push_back({nullptr, OneBased(mark.line), OneBased(mark.column)});
  }
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Attach(New(Node::Kind::kNull, mark, anchor, ""), /*fresh=*/true);
  }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end())
      throw Stop{"unknown alias", OneBased(mark.line), OneBased(mark.column)};
    // An alias inside the collection it names would make the tree a cycle.
    if (!it->second->complete) {
      throw Stop{"recursive alias (an alias inside the node it refers to)", OneBased(mark.line),
                 OneBased(mark.column)};
    }
    Count(mark);
    CheckMergeAlias(*it->second);
    Attach(it->second, /*fresh=*/false);
  }

  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    if (mark.pos >= 0 && !QuoteClosed(text_, static_cast<size_t>(mark.pos))) {
      throw Stop{"invalid YAML: found unexpected end of stream while scanning a quoted scalar "
                 "(the quote opened here is never closed)",
                 OneBased(mark.line), OneBased(mark.column)};
    }
    Node* n = New(Node::Kind::kScalar, mark, anchor, tag);
    n->text = value;
    if (!RepairEscapes(n->text)) {
      throw Stop{"invalid UTF-8 in a scalar after decoding its escapes", OneBased(mark.line),
                 OneBased(mark.column)};
    }
    Attach(n, /*fresh=*/true);
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Open(New(Node::Kind::kSequence, mark, anchor, tag), mark);
  }
  void OnSequenceEnd() override { Close(); }

  void OnMapStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Open(New(Node::Kind::kMapping, mark, anchor, tag), mark);
  }
  void OnMapEnd() override { Close(); }

 private:
  void Count(const YAML::Mark& mark) { Count(OneBased(mark.line), OneBased(mark.column)); }
  void Count(int line, int column) {
    if (++count_ > kMaxNodes) {
      throw Stop{"too many YAML nodes (more than " + std::to_string(kMaxNodes) + ")", line,
                 column};
    }
  }

  Node* New(Node::Kind kind, const YAML::Mark& mark, YAML::anchor_t anchor,
            const std::string& tag) {
    Count(mark);
    // Only YAML's own tags mean something here; a local tag (`!foo x`) would otherwise be
    // dropped silently. Go's decoder refuses them too ("cannot unmarshal !foo").
    if (!tag.empty() && tag != "?" && tag != "!" && tag.rfind("tag:yaml.org,2002:", 0) != 0) {
      throw Stop{"unsupported tag \"" + tag + "\"", OneBased(mark.line), OneBased(mark.column)};
    }
    // yaml-cpp reads a tag with characters a tag may not have (`!\x41`) as the bare `!` and
    // the rest as the value; a bare `!` is only ever followed by a space or line break.
    const auto pos = static_cast<size_t>(mark.pos < 0 ? 0 : mark.pos);
    if (tag == "!" && pos + 1 < text_.size() && text_[pos] == '!' &&
        std::string_view(" \t\r\n").find(text_[pos + 1]) == std::string_view::npos) {
      throw Stop{"invalid YAML: did not find the expected whitespace after a tag",
                 OneBased(mark.line), OneBased(mark.column)};
    }
    Node& n = tree_.nodes.emplace_back();
    n.kind = kind;
    n.line = OneBased(mark.line);
    n.column = OneBased(mark.column);
    // yaml-cpp reports "?" for a plain untagged node and "!" for a quoted or block scalar.
    n.quoted = tag == "!";
    if (tag != "?" && tag != "!") n.tag = tag;
    n.complete = kind == Node::Kind::kNull || kind == Node::Kind::kScalar;
    if (anchor != 0) anchors_[anchor] = &n;
    return &n;
  }

  void Attach(Node* n, bool fresh) {
    if (stack_.empty()) {
      if (extra_) {
        // yaml-cpp reads an empty document, `~` and `null` alike as a null root: nothing lost.
        if (n->kind == Node::Kind::kNull) return;
        throw *extra_;
      }
      tree_.documents.back().root = n;
      return;
    }
    Node* parent = stack_.back();
    bool is_value = parent->kind == Node::Kind::kMapping && parent->items.size() % 2 == 1;
    // yaml-cpp marks an omitted value (`key:` then a newline) at the next token, often on the
    // next line; point errors about it at its key instead.
    if (fresh && is_value && n->kind == Node::Kind::kNull &&
        n->line != parent->items.back()->line) {
      n->line = parent->items.back()->line;
      n->column = parent->items.back()->column;
    }
    parent->items.push_back(n);
  }

  void Open(Node* n, const YAML::Mark& mark) {
    Attach(n, /*fresh=*/true);
    stack_.push_back(n);
    // Checked at the start of each collection, so yaml-cpp's own recursion never gets deep.
    if (static_cast<int>(stack_.size()) > kMaxDepth) {
      throw Stop{"nesting deeper than " + std::to_string(kMaxDepth) + " levels",
                 OneBased(mark.line), OneBased(mark.column)};
    }
  }

  void Close() {
    Node* n = stack_.back();
    if (n->kind == Node::Kind::kMapping) ApplyMerge(*n);
    n->complete = true;
    stack_.pop_back();
  }

  // YAML 1.1 merge keys, applied as Go's yaml.v3 applies them before its strict known-fields
  // check, so that every reader of the tree sees the merged mapping and nothing else:
  // `<<: *a` (or an inline mapping) adds the pairs of that mapping, `<<: [*a, *b]` those of
  // each; a key written in the mapping itself wins over a merged one, and within a list an
  // earlier mapping wins over a later one. The mapping is rewritten once, when it is complete;
  // a mapping merged from was completed (and merged itself) before, so nested merges need no
  // recursion here.
  // Positions: merged pairs are the very nodes of the mapping they came from, so an error about
  // a merged key or value names where it was written (inside the anchored mapping), not the
  // `<<`. Errors about the merge itself name the `<<` key.
  // Duplicates: the mapping's own pairs are all kept, so an explicit key written twice is still
  // the readers' duplicate-key error; a merged key equal to an explicit one, or to a key of an
  // earlier merged mapping, is dropped and so is no duplicate.
  void ApplyMerge(Node& map) {
    const Node* merge_key = nullptr;
    const Node* merge_value = nullptr;
    std::vector<const Node*> items;
    items.reserve(map.items.size());
    for (size_t i = 0; i + 1 < map.items.size(); i += 2) {
      const Node* key = map.items[i];
      if (!IsMergeKey(*key)) {
        items.push_back(key);
        items.push_back(map.items[i + 1]);
        continue;
      }
      // yaml.v3 refuses a key written twice, `<<` included ("already defined").
      if (merge_key != nullptr) {
        throw Stop{"duplicate key \"<<\" (first at line " + std::to_string(merge_key->line) + ")",
                   key->line, key->column};
      }
      merge_key = key;
      merge_value = map.items[i + 1];
    }
    if (merge_key == nullptr) return;
    std::set<std::string_view> present;
    for (size_t i = 0; i < items.size(); i += 2) {
      if (items[i]->kind == Node::Kind::kScalar) present.insert(items[i]->text);
    }
    for (const Node* source : MergeSources(*merge_key, *merge_value)) {
      for (size_t i = 0; i + 1 < source->items.size(); i += 2) {
        // Every pair looked at costs a node, so merging a big mapping many times stays within
        // the node limit in time and memory (the pairs are shared, only pointers are copied).
        Count(merge_key->line, merge_key->column);
        const Node* key = source->items[i];
        // A key that is not a string is kept for the readers to refuse, with its position.
        if (key->kind == Node::Kind::kScalar && !present.insert(key->text).second) continue;
        items.push_back(key);
        items.push_back(source->items[i + 1]);
      }
    }
    map.items = std::move(items);
  }

  // The mappings a `<<` value names, in order: itself, or the items of a list of mappings.
  static std::vector<const Node*> MergeSources(const Node& key, const Node& value) {
    if (value.kind == Node::Kind::kMapping) return {&value};
    if (value.kind != Node::Kind::kSequence) throw BadMerge(key, KindName(value.kind));
    for (size_t i = 0; i < value.items.size(); ++i) {
      if (value.items[i]->kind != Node::Kind::kMapping) {
        throw BadMerge(key, "a list whose item " + std::to_string(i) + " is " +
                                KindName(value.items[i]->kind));
      }
    }
    return value.items;
  }

  // yaml.v3 takes an alias as a merge value only if it names a mapping: not even a list of
  // mappings. The tree no longer tells an alias from the node it names, so this is checked as
  // the alias is read.
  void CheckMergeAlias(const Node& target) const {
    if (stack_.empty() || target.kind == Node::Kind::kMapping) return;
    const Node& parent = *stack_.back();
    if (parent.kind != Node::Kind::kMapping || parent.items.size() % 2 == 0) return;
    const Node& key = *parent.items.back();
    if (IsMergeKey(key)) throw BadMerge(key, "an alias to " + KindName(target.kind));
  }

  // `<<` plain and untagged, or tagged !!merge; a quoted '<<' is an ordinary key (as in yaml.v3).
  static bool IsMergeKey(const Node& key) {
    if (key.kind != Node::Kind::kScalar || key.text != "<<") return false;
    return key.tag == "tag:yaml.org,2002:merge" || (!key.quoted && key.tag.empty());
  }

  static Stop BadMerge(const Node& key, const std::string& got) {
    return Stop{"the value of a merge key (<<) must be a mapping or a list of mappings, got " + got,
                key.line, key.column};
  }

  static std::string KindName(Node::Kind kind) {
    switch (kind) {
      case Node::Kind::kNull:
        return "null";
      case Node::Kind::kScalar:
        return "a scalar";
      case Node::Kind::kSequence:
        return "a list";
      case Node::Kind::kMapping:
        break;
    }
    return "a mapping";
  }

  Tree& tree_;
  size_t max_documents_;
  const std::string& too_many_;
  std::string_view text_;
  std::vector<Node*> stack_;
  std::map<YAML::anchor_t, Node*> anchors_;
  long count_ = 0;
  std::optional<Stop> extra_;  // set while in a document past max_documents_: its error
};

}  // namespace

Result<std::unique_ptr<Tree>> LoadYaml(std::string_view text, const std::string& source,
                                       size_t max_documents, const std::string& too_many) {
  if (text.size() > kMaxTextBytes) {
    return InvalidError(source + ": step text is " + std::to_string(text.size()) +
                        " bytes, more than the limit of " + std::to_string(kMaxTextBytes));
  }
  if (auto bad = CheckText(text)) {
    return InvalidError(TextPosition(text, bad->first, source) + ": " + bad->second);
  }
  auto tree = std::make_unique<Tree>();
  try {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    Builder builder(*tree, max_documents, too_many, text);
    while (parser.HandleNextDocument(builder)) {
    }
  } catch (const Stop& s) {
    return InvalidError(Position(source, s.line, s.column) + ": " + s.message);
  } catch (const YAML::Exception& e) {
    // e.msg is the bare message; what() repeats the position in yaml-cpp's own format.
    return InvalidError(Position(source, OneBased(e.mark.line), OneBased(e.mark.column)) +
                        ": invalid YAML: " + e.msg);
  } catch (const std::bad_alloc&) {
    return InvalidError(source + ": out of memory while reading YAML");
  } catch (const std::exception& e) {
    return InvalidError(source + ": invalid YAML: " + e.what());
  } catch (...) {
    return InvalidError(source + ": invalid YAML");
  }
  return tree;
}

}  // namespace sr::stepfile::internal
