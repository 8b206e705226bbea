# %% [markdown]
# # 12 · Choosing a method — Solutions
#
# **Measured runtime:** 11 s on a 2-core CPU (`make execute`; your machine may differ).
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
# When there are very many tasks, storage (or switching per request) is the binding constraint, and the model is large enough for a soft prompt to work. The lesson measured the price on a 2 M model, over three seeds on the yardstick (clinic notes after a vocabulary stage): prompt tuning trails LoRA and full fine-tuning under the same 20-step protocol (the lesson's three-seed table gives the means and intervals; a single run would not do, since the seed alone moves a 20-step run by about as much as some of the gaps between methods). Lester et al. found the gap closes only around 10 B parameters. So the rule is sound for a large base serving thousands of tasks (soft prompts of different tasks can even share one batch); on a small model I would rather store fewer, smaller LoRA adapters (r = 1–2, fewer targets) before giving up that much quality, and measure both on the real task.
# <!-- END SOLUTION -->
#
# ## Interview questions
#
# **Q1. How do you choose between full fine-tuning, LoRA, QLoRA and prompt tuning?**
#
# <!-- BEGIN SOLUTION -->
# Follow the constraints in order. (1) Is training needed at all? Facts that change → retrieval; under ~100 examples → prompting. (2) Does full fine-tuning fit (16 bytes/parameter with AdamW, which the lesson counted exactly, plus activations), with plenty of data and one task? Then full fine-tuning, or freeze-tuning its top layers: on the lesson's yardstick these two reached the lowest mean losses over three seeds, within noise of each other, far ahead of every PEFT method (the table gives the intervals). Count activations too: they grow with sequence length × batch, and gradient checkpointing trades about a third more compute for most of them. (3) Otherwise LoRA on a 16-bit base: a ~100 kB artefact against the 8 MB model, mergeable, one adapter per task. (4) If only a 4-bit base fits, QLoRA: the same adapter on a 4-bit base, slower per step. (5) Prompt tuning only for a very large model and many tiny tasks: on our small model it was the weakest trained method. The thresholds are rules of thumb; measure on your task, as the lesson did.
# <!-- END SOLUTION -->
#
# **Q2. What does each method cost, and what does it buy? Give numbers.**
#
# <!-- BEGIN SOLUTION -->
# Full fine-tuning: all 2.04 M parameters, 16 bytes/parameter of weights + gradients + AdamW state (32.6 MB here) before activations, and the whole model as artefact (8.2 MB); it buys one of the two best scores on the yardstick (freeze-tuning of the top block and head, with about a third of the parameters, is within noise of it). LoRA q,v r=8: 24,576 parameters (1.2 %), gradients and optimizer state for those only, a ~100 kB artefact (4 bytes × 24,576 + a config); it buys about a third of full fine-tuning's gain over the starting loss on the yardstick (three-seed means and intervals in the lesson: 20 steps are few for a rank-8 update). QLoRA: the same adapter on a 4-bit base, a little behind LoRA on the yardstick beyond the noise; it saves weight memory (large at 7 B: about 3.2 GiB instead of 12.6 GiB for the frozen Llama-2-7B base, small at 2 M where activations — over 100 MB for a batch of 16 notes — dominate) and costs time per step (dequantization). Prompt tuning: 3,840 parameters and a ~16 kB artefact, but no less activation memory (the prompt lengthens every sequence and the gradient crosses the whole frozen network) and a score behind LoRA's on a model this small. Time per step barely drops for any PEFT method on a CPU: the full forward and backward passes are still paid.
# <!-- END SOLUTION -->
#
# **Q3. When should you not fine-tune at all?**
#
# <!-- BEGIN SOLUTION -->
# When the knowledge changes or must be recalled in any phrasing (use retrieval: facts in the prompt are used however the question is worded, fine-tuned facts mostly in the trained phrasing, chapters 01, 05 and 08); when you have only a handful of examples (prompt, and collect data); when a large model already does the task with a good prompt; when you cannot evaluate the result (no held-out set, no baseline). A caveat the lesson measured: prompting needs a model that learns from its context. Our 2 M model does not: example notes in front barely change its loss (the lesson's few-shot floor), while 20 steps of training cut it clearly. On a 7 B model the order of options is the same, but the prompting floor is far lower.
# <!-- END SOLUTION -->
#
# **Q4. "QLoRA is faster, and PEFT prevents forgetting." What do you answer?**
#
# <!-- BEGIN SOLUTION -->
# QLoRA is not faster: it dequantizes every 4-bit weight on every forward and backward pass, so it is slower per step (the lesson timed LoRA and QLoRA interleaved on the same batches and asserted QLoRA > 1.1× LoRA on small batches; chapter 05 measured 1.2–1.7×). It saves memory, which is why it exists (Dettmers et al. 2023). PEFT does not prevent forgetting: the base weights stay intact, so removing the adapter restores the base exactly, but the adapted model you deploy got worse on general text after training on clinic notes; in the lesson the general-text loss rose with both full fine-tuning and LoRA as they learned the clinic notes. Comparing "how much" needs matched learning: each method at three learning rates traces a learning-vs-forgetting curve, and the lesson compares the curves at the same clinic loss over three seeds (as Biderman et al. 2024 do); comparing two runs at arbitrary learning rates compares the rates. "Prevents" is false.
# <!-- END SOLUTION -->
#
# **Q5. How do you choose the base model to fine-tune?**
#
# <!-- BEGIN SOLUTION -->
# Licence first (Apache-2.0/MIT vs "open weights" licences with use restrictions; a distilled model also inherits the terms of what it was distilled from). Then the kind: a base model when you will do substantial SFT or the task is continuation; an instruct model when your data is small and chat-shaped (keep its chat template); a reasoning model when the task needs multi-step reasoning and long outputs are affordable; a distilled small model when size matters. Then measure tokenizer fit on your own text: in the lesson the course tokenizer needed fewer tokens per word than SmolLM2's on the world's prose but about 1.5× more on clinic notes, and more tokens mean more compute and activation memory per example. Finally size against hardware with states + activations for your sequence length and batch (`choosing.memory_need`): a 7 B model with LoRA on one 2,048-token sequence needs about 24 GiB without checkpointing and 14 GiB with it; a 70 B model fits 48 GB only as QLoRA with checkpointing. Start with the smallest model that does the task, measured on a held-out set.
# <!-- END SOLUTION -->
