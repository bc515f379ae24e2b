"""The language-model experiment (Shumailov et al., section 1): OPT fine-tuned recursively on its
own generated text. Stage 1 (data, models, DeepSpeed training, evaluation) lives in data.py,
tokenizer.py, model.py, train.py, evaluate.py, distributed.py; EXPERIMENT is defined by stage 2."""
