# %% [markdown]
# # 12 · Choosing a method — Solutions
#
# **Measured runtime:** 9 s on a 2-core CPU (`make execute`; your machine may differ).
#
# Exercises for [the lesson](../notebooks/12_choosing_a_method.ipynb). Each exercise says its level: ★ warm-up,
# ★★ core, ★★★ stretch. Write your code where it says so, then run the check cell below it: it
# tells you what is wrong, not only that something is.

# %%
import course_lib
from course_lib.course.checkers import ch12
from course_lib.choosing import recommend

device = course_lib.setup(seed=0)


# %% [markdown]
# ## Exercise 1 ★ — count trainable parameters
#
# Write `count_trainable(model)`: the number of trainable parameters of any model (a peft model
# included). Two traps: frozen parameters do not count, and the course model's embedding matrix is
# *tied* to its LM head, one tensor under two names, which must be counted once.

# %%
def count_trainable(model) -> int:
    ### BEGIN SOLUTION
    return sum(
        p.numel() for p in model.parameters() if p.requires_grad
    )  # parameters() yields a tied tensor once
    ### END SOLUTION


# %%
ch12.check_count_trainable(count_trainable)


# %% [markdown]
# ## Exercise 2 ★★ — the size of the artefact
#
# Write `artefact_bytes(model)`: the bytes of the tensors an adapter artefact holds, that is the
# trainable tensors, each at its own precision (`element_size()`: 4 for fp32, 2 for bf16). The check
# uses a LoRA model in fp32 and the same adapter in bf16. (peft's file adds a small header and a
# config on top; the lesson measured both.)

# %%
def artefact_bytes(model) -> int:
    ### BEGIN SOLUTION
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    ### END SOLUTION


# %%
ch12.check_artefact_bytes(artefact_bytes)


# %% [markdown]
# ## Exercise 3 ★★ — the Pareto front
#
# A results table maps each method to `(trainable parameters, accuracy)`. This time the score is an
# **accuracy: higher is better** (the lesson's loss was lower-is-better). Write `pareto_front(results)`:
# the names of the methods that no other method *dominates*, where B dominates A when B has no more
# parameters and no lower accuracy, and is strictly better on at least one of the two.

# %%
def pareto_front(results: dict[str, tuple[float, float]]) -> list[str]:
    ### BEGIN SOLUTION
    front = []
    for name, (cost, score) in results.items():
        dominated = any(
            c <= cost and s >= score and (c < cost or s > score)
            for other, (c, s) in results.items()
            if other != name
        )
        if not dominated:
            front.append(name)
    return front
    ### END SOLUTION


# %%
ch12.check_pareto(pareto_front)
print("front of the example table:", sorted(pareto_front(ch12.PARETO_CASE)))


# %% [markdown]
# ## Exercise 4 ★★★ — add a storage rule to the decision procedure
#
# A platform serves `n_tasks` tasks from one base model and can store only `budget_kb` kilobytes
# (1 kB = 1000 bytes) per task. Write `recommend_with_storage(params_b, gpu_gib, n_examples, task,
# n_tasks, hidden, layers, budget_kb)` that returns a method name:
#
# * start from `recommend(params_b, gpu_gib, n_examples, task, n_tasks).method`;
# * only when there are several tasks (`n_tasks > 1`) and that answer is `"LoRA"` or `"QLoRA"`, and a
#   LoRA adapter (r = 8 on `q_proj` and `v_proj`, both `hidden × hidden`, stored in bf16) is larger
#   than the budget: return `"prompt tuning"` if a 20-token soft prompt in bf16 fits the budget,
#   else `"prompting (few-shot or retrieval)"`;
# * otherwise return `recommend`'s answer.
#
# (LoRA on one `hidden × hidden` layer has $r \cdot (\text{in} + \text{out})$ parameters; a soft prompt
# has $20 \cdot \text{hidden}$.)

# %%
def recommend_with_storage(
    params_b, gpu_gib, n_examples, task, n_tasks, hidden, layers, budget_kb
) -> str:
    ### BEGIN SOLUTION
    method = recommend(params_b, gpu_gib, n_examples, task, n_tasks).method
    lora_bytes = layers * 2 * 8 * (hidden + hidden) * 2  # 2 layers per block, r·(in+out), 2 bytes
    prompt_bytes = 20 * hidden * 2
    budget = budget_kb * 1000
    if n_tasks > 1 and method in ("LoRA", "QLoRA") and lora_bytes > budget:
        return "prompt tuning" if prompt_bytes <= budget else "prompting (few-shot or retrieval)"
    return method
    ### END SOLUTION


# %%
ch12.check_recommend_with_storage(recommend_with_storage)
print(recommend_with_storage(7, 24, 5_000, "classification", 100, 4096, 32, 1_000))

# %% [markdown]
# **Does the rule make sense?** *(answer in a few sentences)* The lesson measured what a soft prompt
# costs in quality on a small model. When would you accept that cost for the storage it saves?
#
# <!-- BEGIN SOLUTION -->
# When there are very many tasks, storage (or switching per request) is the binding constraint, and the model is large enough for a soft prompt to work. The lesson measured the price on a 2 M model: prompt tuning was the weakest trained method (about 7.7 nats/token on the clinic notes, against 6.98 for LoRA, 6.72 for QLoRA and 4.37 for full fine-tuning under the same 20-step protocol; chapter 07 measured 6.50 for LoRA with this protocol, so 20-step runs at large learning rates move by a few tenths). Lester et al. found the gap closes only around 10 B parameters. So the rule is sound for a large base serving thousands of tasks (soft prompts of different tasks can even share one batch); on a small model I would rather store fewer, smaller LoRA adapters (r = 1–2, fewer targets) before giving up that much quality, and measure both on the real task.
# <!-- END SOLUTION -->
#
# ## Interview questions
#
# **Q1. How do you choose between full fine-tuning, LoRA, QLoRA and prompt tuning?**
#
# <!-- BEGIN SOLUTION -->
# Follow the constraints in order. (1) Is training needed at all? Facts that change → retrieval; under ~100 examples → prompting. (2) Does full fine-tuning fit (16 bytes/parameter with AdamW, which the lesson counted exactly, plus activations), with plenty of data and one task? Then full fine-tuning: in the lesson it (and freeze-tuning, which also trains the embedding/head matrix) led every PEFT method by more than 1 nat/token at equal steps (4.37 nats/token for full fine-tuning vs 6.98 for LoRA). (3) Otherwise LoRA on a 16-bit base: a ~100 kB artefact against the 8 MB model, mergeable, one adapter per task. (4) If only a 4-bit base fits, QLoRA: it scored close to LoRA (6.72 vs 6.98 nats/token here, asserted within 0.5, the spread of the PEFT methods) but is slower per step. (5) Prompt tuning only for a very large model and many tiny tasks: on our small model it was the weakest trained method. The thresholds are rules of thumb; measure on your task, as the lesson did.
# <!-- END SOLUTION -->
#
# **Q2. What does each method cost, and what does it buy? Give numbers.**
#
# <!-- BEGIN SOLUTION -->
# Full fine-tuning: all 2.04 M parameters, 16 bytes/parameter of weights + gradients + AdamW state (32.6 MB here) before activations, and the whole model as artefact (8.2 MB); it buys the best score (4.37 nats/token). LoRA q,v r=8: 24,576 parameters (1.2 %), gradients and optimizer state for those only, a ~100 kB artefact (4 bytes × 24,576 + a config); it buys 6.98. QLoRA: the same adapter on a 4-bit base; it saves weight memory (large at 7 B: about 3.2 GiB instead of 12.6 GiB for the frozen Llama-2-7B base, small at 2 M where activations — over 100 MB for a batch of 16 notes — dominate) and costs time per step (dequantization). Prompt tuning: 3,840 parameters and a ~16 kB artefact, but no less activation memory (the prompt lengthens every sequence and the gradient crosses the whole frozen network) and the worst score (7.74). Time per step barely drops for any PEFT method on a CPU: the full forward and backward passes are still paid.
# <!-- END SOLUTION -->
#
# **Q3. When should you not fine-tune at all?**
#
# <!-- BEGIN SOLUTION -->
# When the knowledge changes or must be recalled in any phrasing (use retrieval: facts in the prompt are used however the question is worded, fine-tuned facts mostly in the trained phrasing, chapters 01, 05 and 08); when you have only a handful of examples (prompt, and collect data); when a large model already does the task with a good prompt; when you cannot evaluate the result (no held-out set, no baseline). A caveat the lesson measured: prompting needs a model that learns from its context. Our 2 M model does not: zero-shot 12.47 nats/token, 1-shot 12.40, 3-shot 12.72, while 20 steps of any trained method cut the loss by several nats/token. On a 7 B model the order of options is the same, but the prompting floor is far lower.
# <!-- END SOLUTION -->
#
# **Q4. "QLoRA is faster, and PEFT prevents forgetting." What do you answer?**
#
# <!-- BEGIN SOLUTION -->
# QLoRA is not faster: it dequantizes every 4-bit weight on every forward and backward pass, so it is slower per step (the lesson timed LoRA and QLoRA interleaved on the same batches and asserted QLoRA > 1.1× LoRA on small batches; chapter 05 measured 1.2–1.7×). It saves memory, which is why it exists (Dettmers et al. 2023). PEFT does not prevent forgetting: the base weights stay intact, so removing the adapter restores the base exactly, but the adapted model you deploy got worse on general text after training on clinic notes; in the lesson the general-text loss rose from 0.43 to 8.01 nats/token after LoRA on clinic notes (full fine-tuning: 11.68; prefix tuning: 9.37; prompt tuning, which only changes the input: 1.90). "LoRA forgets less" (Biderman et al. 2024) held in direction, and by how much depends on the learning rate and the steps; "prevents" is false.
# <!-- END SOLUTION -->
