#!/usr/bin/env python3
"""Writes tests/fixtures/lcrec/: a tiny LC-Rec dataset and the texts upstream's data.py makes from it.

Usage:
  git -C /work/.mirror/RUCAIBox+LC-Rec/repo show HEAD:data.py > /tmp/up/data.py
  git -C /work/.mirror/RUCAIBox+LC-Rec/repo show HEAD:prompt.py > /tmp/up/prompt.py
  tools/lcrec_golden.py /tmp/up tests/fixtures/lcrec

Upstream's dataset classes are run as they are (torch, numpy and tqdm are stubbed: with sample_num
<= 0 and sample_valid off they are not called). Their random template / preference / query draws
are replaced by explicit choices recorded with each case, so seqrec can render the same sample with
the same choices and must produce the same strings. Inputs: Tiny.inter.json, Tiny.item.json,
Tiny.index.json, Tiny.user.json; output: golden.json.
"""
import json
import os
import sys
import types


def stub_modules():
    torch = types.ModuleType("torch")
    torch.nn = types.ModuleType("torch.nn")
    torch.utils = types.ModuleType("torch.utils")
    torch.utils.data = types.ModuleType("torch.utils.data")
    torch.utils.data.Dataset = object
    torch.distributed = types.ModuleType("torch.distributed")
    for name, mod in [("torch", torch), ("torch.nn", torch.nn), ("torch.utils", torch.utils),
                      ("torch.utils.data", torch.utils.data), ("torch.distributed", torch.distributed),
                      ("numpy", types.ModuleType("numpy")), ("tqdm", types.ModuleType("tqdm"))]:
        sys.modules[name] = mod
    sys.modules["tqdm"].tqdm = lambda x, **k: x


ITEMS = {
    "0": {"title": "Fender Guitar Picks, 12 Pack.", "description": "Medium picks.\nClassic shape."},
    "1": {"title": "  Ernie Ball Strings!  ", "description": "Nickel wound"},
    "2": {"title": "Boss Tuner TU-3:", "description": "  Chromatic pedal tuner  "},
    "3": {"title": "Caf\u00e9 Ukulele?", "description": "Soprano, {not a field} and }{ braces"},
    "4": {"title": "`Shure SM58`", "description": "Dynamic \"vocal\" mic"},
    "5": {"title": "Capo\u00a0", "description": "Trigger capo"},
    "6": {"title": "Strap ..., ;", "description": "Leather strap"},
}
INTERS = {"0": [0, 1, 2, 3, 4], "1": [2, 4, 6, 1, 0, 5, 3], "2": [6, 5, 4], "3": [1, 3, 5, 0, 2, 4, 6, 1]}
INDEX = {str(i): ["<a_%d>" % (i % 3), "<b_%d>" % (7 - i), "<c_%d>" % (i * 5), "<d_%d>" % i] for i in range(7)}
PREFS = {
    "0": ["Likes \"bright\" tone.", "Long-term: acoustic gear", "Short-term: strings"],
    "1": ["Prefers pedals"],
    "3": ["Budget player", "Collects capos"],
}


def intention(items, item_pos):
    return {"item": items[item_pos], "inters": items[:item_pos]}


def user_json():
    train, test = {}, {}
    for u, items in INTERS.items():
        if u in PREFS:
            train[u] = dict(intention(items, len(items) - 3), querys=["Wants a %s" % u, "Needs item {%s}" % u])
            test[u] = dict(intention(items, len(items) - 1), querys=["Test intent %s" % u, "Item intent %s" % u])
    train["2"] = dict(intention(INTERS["2"], 0), querys=["ignored", "ignored"])  # no preferences: not used
    return {"user_explicit_preference": PREFS, "user_vague_intention": {"train": train, "test": test}}


class Args:
    def __init__(self, data_path, max_his_len, add_prefix, his_sep):
        self.data_path = data_path
        self.dataset = "Tiny"
        self.max_his_len = max_his_len
        self.his_sep = his_sep
        self.index_file = ".index.json"
        self.add_prefix = add_prefix
        self.sample_valid = False
        self.valid_prompt_id = 0


def cases(data, prompt, args, all_templates_for_first):
    ds_classes = [
        ("seqrec", "train", lambda: data.SeqRecDataset(args, mode="train")),
        ("seqrec", "valid", lambda: data.SeqRecDataset(args, mode="valid")),
        ("seqrec", "test", lambda: data.SeqRecDataset(args, mode="test")),
        ("fusionseqrec", "train", lambda: data.FusionSeqRecDataset(args, mode="train")),
        ("fusionseqrec", "valid", lambda: data.FusionSeqRecDataset(args, mode="valid")),
        ("fusionseqrec", "test", lambda: data.FusionSeqRecDataset(args, mode="test")),
        ("item2index", "train", lambda: data.ItemFeatDataset(args, task="item2index")),
        ("index2item", "train", lambda: data.ItemFeatDataset(args, task="index2item")),
        ("itemsearch", "train", lambda: data.ItemSearchDataset(args, mode="train")),
        ("itemsearch", "test", lambda: data.ItemSearchDataset(args, mode="test")),
        ("preferenceobtain", "train", lambda: data.PreferenceObtainDataset(args)),
    ]
    out = []
    for task, mode, make in ds_classes:
        ds = make()
        samples = getattr(ds, "inter_data", None) or getattr(ds, "feat_data", None) or \
            getattr(ds, "search_data", None) or ds.preference_data
        templates = prompt.all_prompt[task]
        for i, d in enumerate(samples):
            ids = range(len(templates)) if (i == 0 and all_templates_for_first) else [i % len(templates)]
            for t in ids:
                case = {"task": task, "mode": mode, "sample": i, "template": t}
                if "explicit_preferences" in d:
                    case["preference"] = (i + t) % len(d["explicit_preferences"])
                    d["explicit_preference"] = d["explicit_preferences"][case["preference"]]
                if "user_related_intention" in d:
                    case["query"] = (i + t) % 2
                    d["query"] = [d["user_related_intention"], d["item_related_intention"]][case["query"]]
                inp, outp = ds._get_text_data(d, templates[t])
                instruction = templates[t]["instruction"].format(**d)
                assert inp == prompt.sft_prompt.format(instruction=instruction, response="")
                # test mode returns (input, response); the others (input, input + response)
                response = outp if mode == "test" else outp[len(inp):]
                if mode != "test":
                    assert outp == inp + response
                case["instruction"] = instruction
                case["response"] = response
                out.append(case)
    return out


def main():
    up, out_dir = sys.argv[1], sys.argv[2]
    stub_modules()
    sys.path.insert(0, up)
    import data
    import prompt

    os.makedirs(out_dir, exist_ok=True)
    files = {"Tiny.inter.json": INTERS, "Tiny.item.json": ITEMS, "Tiny.index.json": INDEX, "Tiny.user.json": user_json()}
    for name, content in files.items():
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            json.dump(content, f, indent=1, ensure_ascii=False)
            f.write("\n")
    # data.py reads <data_path>/<dataset>/<dataset>.*.json
    tmp_root = os.path.join(out_dir, ".golden_tmp")
    os.makedirs(os.path.join(tmp_root, "Tiny"), exist_ok=True)
    for name in files:
        with open(os.path.join(out_dir, name), encoding="utf-8") as src, \
                open(os.path.join(tmp_root, "Tiny", name), "w", encoding="utf-8") as dst:
            dst.write(src.read())
    configs = [
        {"max_his_len": 20, "add_prefix": False, "his_sep": ", ", "all_templates_for_first": True},
        {"max_his_len": 3, "add_prefix": True, "his_sep": "; ", "all_templates_for_first": False},
    ]
    golden = {"sft_prompt": prompt.sft_prompt, "configs": []}
    for c in configs:
        args = Args(tmp_root, c["max_his_len"], c["add_prefix"], c["his_sep"])
        golden["configs"].append(dict(c, cases=cases(data, prompt, args, c["all_templates_for_first"])))
    for name in files:
        os.remove(os.path.join(tmp_root, "Tiny", name))
    os.rmdir(os.path.join(tmp_root, "Tiny"))
    os.rmdir(tmp_root)
    with open(os.path.join(out_dir, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, indent=0, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
