"""Every sentence the lab shows, in English and Japanese, in one table; the report (experiments.ablate) uses the
English.

    say = Words("ja")
    say("tab.next-character")                      # "次の文字"
    say("level.unigram", uni=3.347)                # the yardstick's verdict, with its number
    say.variant("residual_off")                    # "残差接続なし" (the registry's label in English)

A key's texts take the same {placeholders} in every language (tests/test_words.py holds them to it), and a missing
key is a KeyError, never a silent fallback. The variants' English labels and meanings are the registry's
(configuration_gpt2mini.SWITCHES); only their Japanese is written here. The figures (matplotlib) stay in English:
its default fonts have no Japanese glyphs.
"""

from configuration_gpt2mini import BASELINE, BASELINE_MEANING, PRESET_LABELS, SWITCHES, variant_label

LANGUAGES = {"en": "English", "ja": "日本語"}
DEFAULT_LANGUAGE = "en"

VARIANTS_JA = {  # variant: (label, meaning)
    BASELINE: (
        "ベースライン",
        "設計どおりの GPT-2：残差接続・Attention・MLP を持つ Pre-LN のブロックと学習される位置埋め込み",
    ),
    "residual_off": ("残差接続なし", "各サブレイヤーの出力を入力に足さず、出力で入力を置き換える"),
    "attention_off": ("Attention なし", "Attention のサブレイヤーがない：各位置は自分の文字しか見えない"),
    "post_ln": ("Post-LN", "LayerNorm を残差の足し算の後に置き、最終 LayerNorm はない（2017 年の Transformer の配置）"),
    "no_layernorm": ("LayerNorm なし", "LayerNorm がどこにもない"),
    "mlp_off": ("MLP なし", "フィードフォワードのサブレイヤーがない"),
    "no_position": ("位置埋め込みなし", "学習される位置の表がない：順序の手がかりは因果マスクだけ"),
    "untied": ("埋め込みの共有なし", "出力に入力埋め込みの転置ではなく別の行列を使う"),
    "sinusoidal": (
        "正弦波の位置",
        "学習する位置の表の代わりに、固定の正弦波・余弦波の位置を埋め込みに足す（2017 年の Transformer）",
    ),
    "rope": ("RoPE", "回転位置埋め込み（Llama）：クエリとキーを位置に応じて回転させる。位置の表はない"),
    "scaled_embeddings": (
        "埋め込みのスケーリング",
        "位置を足す前にトークン埋め込みを sqrt(n_embd) 倍する（2017 年の Transformer）",
    ),
    "rmsnorm": (
        "RMSNorm",
        "LayerNorm の代わりに RMSNorm（Llama）：二乗平均平方根で割るだけで、平均を引かずバイアスもない",
    ),
    "relu": ("ReLU の MLP", "MLP の活性化関数に GELU ではなく ReLU を使う（2017 年の Transformer）"),
    "swiglu": (
        "SwiGLU の MLP",
        "ゲート付き MLP（Llama の SwiGLU：SiLU(gate) × up）。重みの数が GELU の 4 倍幅 MLP と揃うよう 8/3 倍幅",
    ),
    "no_bias": ("バイアスなし", "線形層にも LayerNorm にもバイアスがない（Llama と同じ）"),
}

TABLE: dict[str, dict[str, str]] = {
    # -- the page's fixed words (Gradio's i18n draws them at first paint; the language switch re-words them)
    "settings": {"en": "Settings", "ja": "設定"},
    "corpus": {"en": "Models trained on", "ja": "学習に使ったテキスト"},
    "variants": {"en": "Variants (side by side, next character)", "ja": "比べるモデル（並べて比較・次の文字）"},
    "temperature": {"en": "Temperature (0 = greedy)", "ja": "温度（0 = 常に最も確からしい文字）"},
    "top_k": {"en": "Top-k (0 = off)", "ja": "Top-k（0 = 使わない）"},
    "top_p": {"en": "Top-p (1 = off)", "ja": "Top-p（1 = 使わない）"},
    "more_settings": {"en": "Length, repetition, seed", "ja": "長さ・繰り返し・シード"},
    "max_new": {"en": "Max new characters", "ja": "生成する最大文字数"},
    "repetition_penalty": {"en": "Repetition penalty", "ja": "繰り返しペナルティ"},
    "seed": {"en": "Seed", "ja": "シード"},
    "prompt": {"en": "Prompt", "ja": "プロンプト"},
    "examples": {"en": "Examples (a click runs them side by side)", "ja": "例（クリックすると並べて生成）"},
    "tab.side-by-side": {"en": "Side by side", "ja": "並べて比較"},
    "tab.next-character": {"en": "Next character", "ja": "次の文字"},
    "tab.generate": {"en": "Generate", "ja": "生成"},
    "tab.attention": {"en": "Attention", "ja": "Attention"},
    "tab.knockout": {"en": "Knockout", "ja": "ノックアウト"},
    "tab.training": {"en": "Training", "ja": "学習"},
    "model": {"en": "Model", "ja": "モデル"},
    "generate": {"en": "Generate", "ja": "生成"},
    "stop": {"en": "Stop", "ja": "停止"},
    "output": {"en": "Output", "ja": "出力"},
    "compare": {"en": "Generate side by side", "ja": "並べて生成"},
    "take_back": {"en": "◀ Take back a character", "ja": "◀ 1 文字戻す"},
    "step": {"en": "Draw the next character ▶", "ja": "次の文字を引く ▶"},
    "show_attention": {"en": "Show attention", "ja": "Attention を表示"},
    "attention_grid": {
        "en": "Attention per layer (rows) and head (columns)",
        "ja": "層（行）とヘッド（列）ごとの Attention",
    },
    "head_to_enlarge": {"en": "Head to enlarge", "ja": "拡大するヘッド"},
    "one_head": {"en": "One head, with its characters", "ja": "1 つのヘッドを文字つきで"},
    "head_table": {
        "en": "Each head: mean attention entropy and what it mostly reads",
        "ja": "各ヘッド：Attention の平均エントロピーと主に読む場所",
    },
    "knockout_explained": {
        "en": "Switch parts of the trained **baseline** off at inference time and compare it with the intact model "
        "(same prompt, same seed).",
        "ja": "学習済みの**ベースライン**の部品を推論時に外し、そのままのモデルと比べます"
        "（同じプロンプト、同じシード）。",
    },
    "heads": {"en": "Heads", "ja": "ヘッド"},
    "whole_attention": {"en": "Whole attention layer", "ja": "Attention 層全体"},
    "mlp_layer": {"en": "MLP layer", "ja": "MLP 層"},
    "residual_layer": {"en": "Residual connections of layer", "ja": "残差接続を外す層"},
    "run_knockout": {"en": "Run knockout", "ja": "ノックアウトを実行"},
    "intact": {"en": "Intact", "ja": "そのまま"},
    "knocked_out": {"en": "Knocked out", "ja": "ノックアウト後"},
    "training_explained": {
        "en": "How each variant trained, at its best learning rate: its validation loss against the unigram level "
        "(character frequencies only) and the bigram level (the previous character only); how much its predictions "
        "depend on the input at all; and, per layer, how focused its attention is and how large its residual stream "
        "grew.",
        "ja": "各モデルが最適な学習率でどう学習したか：検証損失とユニグラム水準（文字の頻度だけ）・バイグラム水準"
        "（直前の文字だけ）の比較、予測がそもそも入力にどれだけ依存するか、そして層ごとの Attention の集中度と"
        "残差ストリームの大きさ。",
    },
    "training_plot": {
        "en": "How each variant trained (its metrics log)",
        "ja": "各モデルの学習の様子（メトリクスの記録）",
    },
    "sweep_explained": {
        "en": "Each variant was trained at several learning rates and kept at the one where it ended lowest: a variant "
        "that fails at one learning rate may train at another. The table gives the spread over seeds there; the "
        "unigram and bigram rows are no network at all. Measured by `python -m experiments.ablate`; the report is "
        "docs/ablations.md in the project's repository.",
        "ja": "各モデルを複数の学習率で学習し、損失が最も低く終わった学習率を採りました。ある学習率で失敗するモデルも、"
        "別の学習率では学習できることがあります。表はその学習率でのシード間のばらつきを示し、ユニグラムとバイグラム"
        "の行はネットワークを使わない基準です。`python -m experiments.ablate` で測定。レポートはリポジトリの "
        "docs/ablations.md。",
    },
    "sweep_plot": {
        "en": "Final validation loss against learning rate (experiments.ablate's sweep)",
        "ja": "学習率ごとの最終検証損失（experiments.ablate のスイープ）",
    },
    "sweep_table": {"en": "Each variant at its best learning rate", "ja": "最適な学習率での各モデル"},
    "next_explained": {
        "en": "What each variant would write next after the prompt: its most likely characters and their "
        "probabilities, after the temperature, top-k and top-p in the sidebar (move them and watch the bars).",
        "ja": "プロンプトの次に各モデルが書く文字：最も確からしい文字とその確率（サイドバーの温度・top-k・top-p を適用"
        "した後。動かして棒の変化を見てください）。",
    },
    "colours_explained": {
        "en": "Each character is shaded by how likely its model found it (clear: sure; dark: surprised); hover over "
        "one to see the alternatives.",
        "ja": "各文字は、モデルがその文字をどれだけ確からしいと見たかで色づけしています（薄い：確信、濃い：意外）。"
        "文字にカーソルを重ねると他の候補が見えます。",
    },
    "stopped": {
        "en": "Stopped: press the button again for a new run.",
        "ja": "停止しました。もう一度ボタンを押すと新しく生成します。",
    },
    # -- the introduction
    "intro": {
        "en": "# GPT-2 mini lab\nA character-level GPT-2 and its broken twins (the same recipe, one part switched "
        "off), trained on {sizes}. Same prompt, same seed: each pane is highlighted from where it departs from the "
        "baseline. The settings are in the sidebar.",
        "ja": "# GPT-2 mini ラボ\n文字単位の GPT-2 と、その「壊れた双子」（同じ学習手順で部品を 1 つ外したもの）。"
        "学習に使ったテキスト：{sizes}。同じプロンプト・同じシードなので、各欄はベースラインと違い始めた所から"
        "強調されます。設定はサイドバーにあります。",
    },
    "intro.size": {"en": "{name} ({millions:.2f}M parameters)", "ja": "{name}（モデルのパラメータ数 {millions:.2f}M）"},
    "list.and": {"en": " and ", "ja": "」と「"},
    "list.sep": {"en": "; ", "ja": "。"},
    "list.windows": {"en": "; ", "ja": "、"},
    "list.comma": {"en": ", ", "ja": "、"},
    "sentence.sep": {"en": ". ", "ja": "。"},
    "sentence.end": {"en": ".", "ja": "。"},
    # -- what a loss means (yardsticks.yardstick; the report's words too)
    "level.unigram": {
        "en": "that is the unigram level ({uni:.3f}): it learned the character frequencies and nothing more",
        "ja": "ユニグラム水準（{uni:.3f}）にあたる：文字の頻度だけを学び、それ以上は学んでいない",
    },
    "level.above_unigram": {
        "en": "worse than character frequencies alone ({uni:.3f})",
        "ja": "文字の頻度だけの予測（{uni:.3f}）より悪い",
    },
    "level.bigram": {
        "en": "about the bigram level ({bi:.3f}): it predicts from the current character alone",
        "ja": "ほぼバイグラム水準（{bi:.3f}）：今の文字だけから予測している",
    },
    "level.between": {
        "en": "between the unigram ({uni:.3f}) and bigram ({bi:.3f}) levels",
        "ja": "ユニグラム水準（{uni:.3f}）とバイグラム水準（{bi:.3f}）の間",
    },
    "level.below_bigram": {
        "en": "below the bigram level ({bi:.3f}), so it uses more than the current character",
        "ja": "バイグラム水準（{bi:.3f}）を下回る：今の文字より前の文脈も使っている",
    },
    # -- a pane's caption
    "loss_line": {"en": "validation loss {loss:.3f}{lr}", "ja": "検証損失 {loss:.3f}{lr}"},
    "loss_line.lr": {"en": " (trained at lr {lr:g})", "ja": "（学習率 {lr:g} で学習）"},
    "loss_line.where": {"en": ", {where}", "ja": "、{where}"},
    # -- side by side
    "highlighted": {
        "en": "Highlighted: where each pane departs from **{reference}** (same seed: a pane draws the same characters "
        "until its distribution differs enough). {places}.",
        "ja": "強調：各欄が **{reference}** と違い始めた所（同じシードなので、分布が十分に違うまでは同じ文字を"
        "引きます）。{places}。",
    },
    "place": {"en": "{label} {at}", "ja": "{label}：{at}"},
    "at.agrees": {"en": "agrees so far", "ja": "ここまで同じ"},
    "at.first": {"en": "from the first character", "ja": "最初の文字から"},
    "at.character": {"en": "at character {n}", "ja": "{n} 文字目から"},
    "alike": {"en": "{who} write the same text: {why}.", "ja": "「{who}」は互いに同じ文章を書いています：{why}。"},
    "why_alike.unigram": {
        "en": "each is at the unigram level ({uni:.3f}): it predicts the character frequencies whatever it reads, so "
        "the same seed draws the same characters",
        "ja": "いずれもユニグラム水準（{uni:.3f}）にあり、何を読んでも文字の頻度を予測するので、同じシードでは"
        "同じ文字を引きます",
    },
    "why_alike.close": {
        "en": "their next-character distributions are close enough that the same seed draws the same characters",
        "ja": "次の文字の分布が十分に近いので、同じシードでは同じ文字を引きます",
    },
    "departs_here": {"en": "departs from {reference} here", "ja": "ここから {reference} と違う"},
    "pane_stats": {
        "en": "{chars} chars · {rate:,.0f} chars/s · {ms:.2f} ms/step · loss on its text {loss:.2f}",
        "ja": "{chars} 文字 · {rate:,.0f} 文字/秒 · {ms:.2f} ms/ステップ · 生成した文章での損失 {loss:.2f}",
    },
    "first_character": {"en": "First character after {ms:.0f} ms.", "ja": "最初の文字まで {ms:.0f} ms。"},
    "time_limit": {
        "en": "Stopped after {limit:g} s, the per-request limit.",
        "ja": "1 回あたりの上限 {limit:g} 秒に達したので止めました。",
    },
    "one_running": {"en": "{n} characters, {rate:,.0f} chars/s", "ja": "{n} 文字、{rate:,.0f} 文字/秒"},
    "one_done": {
        "en": "{n} characters in {s:.2f} s ({rate:,.0f} chars/s)",
        "ja": "{n} 文字を {s:.2f} 秒で生成（{rate:,.0f} 文字/秒）",
    },
    # -- the prompt
    "notice.surrogates": {
        "en": "Lone surrogates (not characters: they have no UTF-8 form) became U+FFFD.",
        "ja": "孤立したサロゲート（UTF-8 で表せない、文字ではないもの）を U+FFFD にしました。",
    },
    "notice.empty": {"en": "Empty prompt: starting from a newline.", "ja": "プロンプトが空なので、改行から始めます。"},
    "notice.unseen": {
        "en": "Characters the model never saw ({listed}) go in as UTF-8 bytes.",
        "ja": "モデルが学習で見たことのない文字（{listed}）は UTF-8 のバイトとして入力します。",
    },
    "notice.cropped": {
        "en": "The prompt is longer than the model's context of {n} tokens: using its last {kept} characters.",
        "ja": "プロンプトがモデルの文脈長 {n} トークンより長いので、最後の {kept} 文字を使います。",
    },
    # -- next character, one step at a time
    "drew": {
        "en": "{label} drew **{char}** (probability {p:.2f} after the settings).",
        "ja": "「{label}」が **{char}** を引きました（設定を適用した後の確率 {p:.2f}）。",
    },
    "drew_bytes": {
        "en": "{label} drew bytes that make no character (probability {p:.2g}): nothing added.",
        "ja": "「{label}」が文字にならないバイトを引きました（確率 {p:.2g}）。何も足していません。",
    },
    # -- attention
    "no_attention": {
        "en": "This variant has no attention: each position sees only its own character, so there is no map.",
        "ja": "このモデルには Attention がありません。各位置は自分の文字しか見えないので、マップはありません。",
    },
    "attention_cropped": {
        "en": "Showing the last {shown} characters of the prompt (computed with all {all} as context).",
        "ja": "プロンプトの最後の {shown} 文字を表示しています（計算には {all} 文字すべてを文脈として使っています）。",
    },
    "attention_read": {
        "en": "Each map: rows are the character attending, columns the characters it reads (darker = more weight). "
        "The enlarged head is {head}; pick another below the grid.",
        "ja": "各マップの行は注目する側の文字、列は読まれる側の文字です（濃いほど重みが大きい）。拡大しているのは "
        "{head}。別のヘッドはグリッドの下で選べます。",
    },
    "column.layer": {"en": "layer", "ja": "層"},
    "column.head": {"en": "head", "ja": "ヘッド"},
    "column.entropy": {"en": "mean entropy (nats; low = focused)", "ja": "平均エントロピー（nats、低いほど集中）"},
    "column.reads": {"en": "mostly reads", "ja": "主に読む場所"},
    "reads.spread": {"en": "spread out", "ja": "広く分散"},
    "reads.the previous character": {"en": "the previous character", "ja": "直前の文字"},
    "reads.its own character": {"en": "its own character", "ja": "自分の文字"},
    "reads.the first position": {"en": "the first position", "ja": "最初の位置"},
    "reads.the newlines": {"en": "the newlines", "ja": "改行"},
    "reads.off_map": {"en": "{pattern} (off the map)", "ja": "{pattern}（マップの外）"},
    "short.the previous character": {"en": "previous char", "ja": "直前の文字"},
    "short.its own character": {"en": "own char", "ja": "自分の文字"},
    "short.the first position": {"en": "first position", "ja": "最初の位置"},
    "short.the newlines": {"en": "newlines", "ja": "改行"},
    "short.off_map": {"en": "{pattern}, off the map", "ja": "{pattern}・マップの外"},
    "short.off": {"en": "off", "ja": "なし"},
    "zoom.title": {"en": "{head}: mostly reads {what}", "ja": "{head}：主に{what}を読む"},
    "zoom.spread": {"en": "{head}: spread out", "ja": "{head}：広く分散"},
    "zoom.reads": {"en": "the character it reads", "ja": "読まれる文字"},
    "zoom.attending": {"en": "the character attending", "ja": "注目する文字"},
    "zoom.weight": {"en": "weight", "ja": "重み"},
    # -- knockout
    "knocked_out_of": {"en": "Knocked out of **{label}**: {parts}.", "ja": "**「{label}」**から外した部品：{parts}。"},
    "part.attention": {"en": "attention in {layer}", "ja": "{layer} の Attention"},
    "part.mlp": {"en": "MLP in {layer}", "ja": "{layer} の MLP"},
    "part.residual": {"en": "residual in {layer}", "ja": "{layer} の残差接続"},
    "part.none": {"en": "nothing (choose parts to switch off)", "ja": "なし（外す部品を選んでください）"},
    "passage": {
        "en": "Validation loss on a fixed passage ({windows} x {n} characters): intact **{intact:.3f}**, knocked out "
        "**{broken:.3f}** ({change:+.3f}).",
        "ja": "固定した検証用の一節（{windows} × {n} 文字）での損失：そのまま **{intact:.3f}**、ノックアウト後 "
        "**{broken:.3f}**（{change:+.3f}）。",
    },
    "passage.level": {"en": " Knocked out, {where}.", "ja": "ノックアウト後は{where}。"},
    "passage.unigram": {
        "en": "it is at the unigram level of this passage ({uni:.3f}): no better than character frequencies",
        "ja": "この一節のユニグラム水準（{uni:.3f}）にあり、文字の頻度と変わりません",
    },
    "passage.above_unigram": {
        "en": "it is worse than character frequencies alone (the unigram level of this passage: {uni:.3f})",
        "ja": "文字の頻度だけの予測より悪くなっています（この一節のユニグラム水準：{uni:.3f}）",
    },
    "passage.bigram": {
        "en": "it is about the bigram level of this passage ({bi:.3f}): no better than predicting from the current "
        "character alone",
        "ja": "この一節のバイグラム水準（{bi:.3f}）とほぼ同じで、今の文字だけからの予測と変わりません",
    },
    "passage.between": {
        "en": "it is between the unigram ({uni:.3f}) and bigram ({bi:.3f}) levels of this passage",
        "ja": "この一節のユニグラム水準（{uni:.3f}）とバイグラム水準（{bi:.3f}）の間にあります",
    },
    "passage.below_bigram": {
        "en": "it is still below the bigram level of this passage ({bi:.3f})",
        "ja": "まだこの一節のバイグラム水準（{bi:.3f}）を下回っています",
    },
    # -- training
    "sweep.variant": {"en": "variant", "ja": "モデル"},
    "sweep.best_lr": {"en": "best lr", "ja": "最適な学習率"},
    "sweep.mean": {"en": "val loss (mean over seeds)", "ja": "検証損失（シード間の平均）"},
    "sweep.range": {"en": "range over seeds", "ja": "シード間の範囲"},
    "sweep.window": {"en": "clearly below bigram at lr", "ja": "バイグラム水準を明確に下回る学習率"},
    "sweep.diverged": {"en": "diverged", "ja": "発散"},
    "sweep.none": {"en": "none", "ja": "該当なし"},
    "sweep.unigram": {"en": "character frequencies only (unigram)", "ja": "文字の頻度だけ（ユニグラム）"},
    "sweep.bigram": {"en": "previous character only (bigram)", "ja": "直前の文字だけ（バイグラム）"},
    # -- what to try (lab.story.tips)
    "try": {"en": "**Try:** {text}", "ja": "**試してみよう：** {text}"},
    "try.side-by-side": {
        "en": "Press **Generate side by side**. Validation loss over the held-out text: {said}",
        "ja": "**並べて生成**を押してください。取り分けておいた検証用テキストでの損失：{said}",
    },
    "try.no_losses": {
        "en": "no measured losses for these models.",
        "ja": "これらのモデルには測定した損失がありません。",
    },
    "try.next-character": {
        "en": "Edit the prompt and watch the bars follow it{except_} Then move the temperature: 0 puts everything on "
        "one character, 2 flattens the bars.",
        "ja": "プロンプトを書き換えて、棒がそれに応じて変わるのを見てください{except_}次に温度を動かしてみましょう。"
        "0 ではすべてが 1 文字に集まり、2 では棒が平らになります。",
    },
    "try.except": {
        "en": ", except for {who}: at the unigram level, it shows the same bars whatever it reads.",
        "ja": "。ただし「{who}」はユニグラム水準にあり、何を読んでも同じ棒を示します。",
    },
    "try.attention": {
        "en": "Press **Show attention** with a prompt of several lines: heads titled *previous char* or *newlines* "
        "read mostly one place; the table says what every head mostly reads.",
        "ja": "数行のプロンプトで **Attention を表示** を押してください。*直前の文字* や *改行* と題されたヘッドは"
        "主に 1 か所を読みます。表には各ヘッドが主に読む場所が出ます。",
    },
    "try.knockout": {
        "en": "Switch off the residual connections of L1 and run: compare the knocked-out loss with the intact one "
        "(and, on a shipped corpus, with the unigram and bigram levels of the same passage). Then switch off single "
        "heads instead, one at a time.",
        "ja": "L1 の残差接続を外して実行し、ノックアウト後の損失をそのままの損失と比べてください（同梱のテキストなら、"
        "同じ一節のユニグラム水準・バイグラム水準とも）。次は代わりにヘッドを 1 つずつ外してみましょう。",
    },
    "tab.scaling": {"en": "Scaling", "ja": "スケーリング則"},
    "scaling_explained": {
        "en": "Does a GPT get better just by growing? Here the same model was trained at several sizes, each at "
        "its own best learning rate, and one of those sizes on smaller and smaller shares of its text. The "
        "plots show how the loss fell with size and with data, with a power law fitted to each (its exponent "
        "and interval in the legend), and where too little text was memorized. The frontier is the lowest "
        "loss each amount of compute bought, and the size that bought it. The sizes small enough to ship are "
        "below: each writes with its finished run.",
        "ja": "GPT は大きくするだけで良くなるのか？同じモデルを複数の大きさでそれぞれ最適な学習率で学習し、その"
        "うちの 1 つの大きさをテキストの一部だけでも学習しました。図は、損失が大きさとデータ量につれてどう"
        "下がったかを、それぞれに当てはめたべき乗則（指数とその区間は凡例に）とともに示し、テキストが少なすぎ"
        "ると暗記されたところも示します。フロンティアは、各計算量で得られた最も低い損失と、それを得た大きさで"
        "す。同梱できる小さな大きさを下に並べました。それぞれ学習を終えたモデルで書きます。",
    },
    "scaling.about": {
        "en": "{trials} training runs, measured by `{command}`; the report with every number and the caveats of the "
        "comparison with the published laws is docs/scaling.md in the project's repository.",
        "ja": "{trials} 回の学習を `{command}` で測定。すべての数値と、公表されたスケーリング則との比較の注意点は"
        "リポジトリの docs/scaling.md にあります。",
    },
    "scaling.missing": {
        "en": "No scaling grid was shipped for {corpus}: "
        "`python -m experiments.scaling --corpus {corpus} --ship models` makes one.",
        "ja": "{corpus} のスケーリングの測定は同梱されていません。"
        "`python -m experiments.scaling --corpus {corpus} --ship models` で作れます。",
    },
    "scaling.on_frontier": {"en": "lowest at {low}–{high} FLOPs", "ja": "{low}〜{high} FLOPs で最も低い"},
    "scaling.off_frontier": {"en": "never the lowest", "ja": "最も低くなる計算量はない"},
    "scaling_size_plot": {"en": "Loss against model size", "ja": "モデルの大きさと損失"},
    "scaling_data_plot": {"en": "Loss against data", "ja": "データ量と損失"},
    "scaling_compute_plot": {"en": "Loss against compute, and the frontier", "ja": "計算量と損失、フロンティア"},
    "frontier_table": {
        "en": "The compute-optimal frontier: where the best size changes",
        "ja": "計算量に対する最適なフロンティア：最適な大きさが変わるところ",
    },
    "frontier.budget": {"en": "Compute (FLOPs)", "ja": "計算量（FLOPs）"},
    "frontier.loss": {"en": "Lowest val loss", "ja": "最も低い検証損失"},
    "frontier.size": {"en": "Size (layers x width)", "ja": "大きさ（層 x 幅）"},
    "frontier.parameters": {"en": "Parameters N", "ja": "パラメータ数 N"},
    "frontier.tokens_per_parameter": {"en": "Tokens per parameter", "ja": "パラメータあたりのトークン数"},
    "scaling_size": {"en": "A size from the grid (shipped)", "ja": "測定した大きさ（同梱）"},
    "scaling_sample": {"en": "Write with this size", "ja": "この大きさで書く"},
    "try.training": {
        "en": "A variant that fails at one learning rate may train at another. {windows}",
        "ja": "ある学習率で失敗するモデルも、別の学習率では学習できることがあります。{windows}",
    },
    "standing": {"en": "**{label}** {loss:.3f}{said}", "ja": "**{label}** {loss:.3f}{said}"},
    "standing.unigram": {
        "en": ", at the unigram level ({uni:.3f}): it writes character frequencies whatever it reads",
        "ja": "、ユニグラム水準（{uni:.3f}）にあり、何を読んでも文字の頻度どおりに書く",
    },
    "standing.above_unigram": {
        "en": ", worse than character frequencies alone ({uni:.3f})",
        "ja": "、文字の頻度だけの予測（{uni:.3f}）より悪い",
    },
    "standing.bigram": {
        "en": ", about the bigram level ({bi:.3f}): it predicts from the current character alone",
        "ja": "、ほぼバイグラム水準（{bi:.3f}）にあり、今の文字だけから予測する",
    },
    "standing.against": {
        "en": ", {change:+.3f} against the baseline ({base:.3f})",
        "ja": "、ベースライン（{base:.3f}）との差 {change:+.3f}",
    },
    "windows": {
        "en": "The learning rates at which each ends clearly below the bigram level: {windows}.",
        "ja": "バイグラム水準を明確に下回って終わる学習率：{windows}。",
    },
    "window": {"en": "{label} {lrs}", "ja": "{label}（{lrs}）"},
}
TABLE |= {f"variant.{s.variant}": {"en": s.label, "ja": VARIANTS_JA[s.variant][0]} for s in SWITCHES} | {
    f"meaning.{s.variant}": {"en": s.meaning, "ja": VARIANTS_JA[s.variant][1]} for s in SWITCHES
}
TABLE[f"variant.{BASELINE}"] = {"en": variant_label(BASELINE), "ja": VARIANTS_JA[BASELINE][0]}
PRESETS_JA = {"transformer-2017": "2017 年の Transformer", "gpt1": "GPT-1", "gpt2": "GPT-2", "llama": "Llama のレシピ"}
TABLE |= {f"variant.{p}": {"en": PRESET_LABELS[p], "ja": PRESETS_JA[p]} for p in PRESET_LABELS}
TABLE[f"meaning.{BASELINE}"] = {"en": BASELINE_MEANING, "ja": VARIANTS_JA[BASELINE][1]}


class Words:
    """The table in one language: say(key, **values) formats the key's text."""

    def __init__(self, language: str = DEFAULT_LANGUAGE):
        if language not in LANGUAGES:
            raise ValueError(f"no language {language!r}; choose from {', '.join(LANGUAGES)}")
        self.language = language

    def __call__(self, key: str, **values) -> str:
        return TABLE[key][self.language].format(**values)

    def variant(self, name: str) -> str:
        """A variant's label; the name itself for a model the registry does not know (your own run)."""
        return self(f"variant.{name}") if f"variant.{name}" in TABLE else name

    def listed(self, items: list[str], sep: str = "list.sep") -> str:
        return self(sep).join(items)


ENGLISH = Words("en")


def translations() -> dict[str, dict[str, str]]:
    """{language: {key: text}} for Gradio's i18n (gr.I18n), of the keys without placeholders."""
    return {lang: {k: v[lang] for k, v in TABLE.items() if "{" not in v[lang]} for lang in LANGUAGES}
