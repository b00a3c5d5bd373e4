"""T2R trainer: pretrain a softmax transformer, swap its attention for T2R, finetune, export."""
