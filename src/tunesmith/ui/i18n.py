"""The web page's labels in English and Chinese (switchable in the page). Config keys stay as they
are (they are what a YAML file says) and their help is the schema's own description; everything
else the page says is here, once per language."""

from __future__ import annotations

LANGUAGES = {"en": "English", "zh": "中文"}

LABELS: dict[str, tuple[str, str]] = {  # key: (English, Chinese)
    "title": ("# tunesmith: fine-tune without writing YAML", "# tunesmith：无需编写 YAML 的微调"),
    "language": ("Language", "语言"),
    # tabs
    "tab_data": ("Data", "数据"),
    "tab_train": ("Train", "训练"),
    "tab_eval": ("Evaluate", "评估"),
    "tab_chat": ("Chat", "对话"),
    "tab_export": ("Export", "导出"),
    # data
    "upload": ("Upload a data file (.json, .jsonl, .csv, .parquet)", "上传数据文件（.json、.jsonl、.csv、.parquet）"),
    "data_path": (
        "Data file (a path inside the UI's folders, or the uploaded file)",
        "数据文件（UI 允许目录内的路径，或已上传的文件）",
    ),
    "tokenizer_model": ("Model whose tokenizer and chat template render the rows", "用于分词和聊天模板的模型"),
    "data_stage": ("Stage the data is for", "数据所用的训练阶段"),
    "check": ("Check data", "检查数据"),
    "check_result": (
        "`tunesmith data check` (errors name file:line:field)",
        "`tunesmith data check` 结果（错误给出 文件:行:字段）",
    ),
    "stats_plot": ("Token lengths", "词元长度分布"),
    "preview": ("Rendered rows (trained tokens highlighted)", "渲染后的样本（高亮部分参与训练）"),
    # train
    "form_help": (
        "Every option comes from the config schema; hover a field for its description. Only values that "
        "differ from the defaults are written.",
        "所有选项均由配置模式生成，字段说明即帮助文字。只写出与默认值不同的值。",
    ),
    "load_yaml": ("Load a YAML config into the form", "把 YAML 配置载入表单"),
    "yaml_preview": ("The YAML this run will use", "本次运行将使用的 YAML"),
    "download_yaml": ("Download YAML", "下载 YAML"),
    "start": ("Start training", "开始训练"),
    "runs": (
        "Runs (they keep going when the page or the UI server restarts)",
        "运行列表（页面或 UI 服务重启后仍继续）",
    ),
    "run_pick": ("Run", "运行"),
    "stop": ("Stop (saves a checkpoint)", "停止（保存检查点）"),
    "resume": ("Resume", "继续训练"),
    "refresh": ("Refresh", "刷新"),
    "loss_plot": ("Loss", "损失"),
    "progress": ("Progress", "进度"),
    "log": ("Log", "日志"),
    "status": ("Status", "状态"),
    # evaluate
    "outputs": ("Outputs", "训练产出"),
    "run_eval": ("Run evaluation", "运行评估"),
    "show_report": ("Show report", "显示报告"),
    "compare_table": ("Base vs fine-tuned", "基座模型 vs 微调后"),
    "report": ("Report (eval_report.html)", "报告（eval_report.html）"),
    # chat
    "chat_model": ("Model (an output folder, or `default`)", "模型（训练产出目录，或 `default`）"),
    "side_by_side": ("Side by side with its base model", "与基座模型并排对比"),
    "tuned": ("Fine-tuned", "微调后"),
    "base": ("Base", "基座模型"),
    "message": ("Message", "消息"),
    "send": ("Send", "发送"),
    "clear": ("Clear", "清空"),
    "max_new_tokens": ("Max new tokens", "最大生成词元数"),
    "temperature": ("Temperature (0 = greedy)", "温度（0 = 贪心）"),
    "lora_set": (
        "LoRA set: LoRA outputs of one base, loaded together (leave empty to chat with the model above)",
        "LoRA 集合：同一基座的多个 LoRA 产出，一起加载（留空则与上方模型对话）",
    ),
    "load_set": ("Load the set", "加载集合"),
    "adapter": ("Active adapter (`base`: adapters off)", "当前适配器（`base`：关闭适配器）"),
    # export
    "export_model": ("Output to export", "要导出的训练产出"),
    "export_out": ("Folder to write", "写入目录"),
    "merge": ("Merge adapters into the base weights", "把适配器合并进基座权重"),
    "format": ("Format", "格式"),
    "quant": (
        "Quantisation (GGUF: f16 ... q4_1; ONNX: f32, int8, q8_0, q4_0; transformers: bnb4, bnb8 on a GPU; "
        "gptq4, gptq8, awq4 with llm-compressor)",
        "量化类型（GGUF：f16 … q4_1；ONNX：f32、int8、q8_0、q4_0；transformers：bnb4、bnb8，需 GPU；"
        "gptq4、gptq8、awq4，需 llm-compressor）",
    ),
    "overwrite": ("Replace an existing export", "覆盖已有导出"),
    "export": ("Export", "导出"),
    "export_log": ("`tunesmith export` output", "`tunesmith export` 输出"),
    "reg_name": ("Registered model name", "注册的模型名"),
    "register": ("Register this output", "注册此产出"),
    "reg_version": ("Version", "版本"),
    "reg_alias": ("Alias", "别名"),
    "set_alias": ("Set the alias", "设置别名"),
    "reg_list": ("List versions", "列出版本"),
    "reg_log": ("`tunesmith registry` output", "`tunesmith registry` 输出"),
}


def text(key: str, lang: str) -> str:
    english, chinese = LABELS[key]
    return chinese if lang == "zh" else english
