"""Instruction phrasings per task and question kind; each sample records the one it drew as `prompt_id`.

Kimi-Audio used about 200 instruction variants for ASR and 30 for each other task. Imperative instructions
are built as core phrases x request wrappers ("Transcribe the speech." / "Could you transcribe the
speech?"), so the banks are large without hand-writing each sentence; questions are listed as written.
Placeholders ({label}, {start}, {end}) are filled from the sample's fields. The banks are part of the
output's contract: `prompt_id` = "<task>.<kind>.<index>", stable as long as this file only appends.
"""

from __future__ import annotations

WRAPPERS = ("{X}.", "Please {x}.", "Could you {x}?", "Can you {x}?", "I'd like you to {x}.", "{X}, please.")


def _wrap(cores: list[str], wrappers: tuple[str, ...] = WRAPPERS) -> list[str]:
    out = []
    for core in cores:
        for w in wrappers:
            out.append(w.format(x=core, X=core[0].upper() + core[1:]))
    return out


_CAPTION = [
    "describe this audio", "describe the audio", "describe what you hear", "write a caption for this audio",
    "caption this recording", "give a detailed description of this clip", "describe the sounds in this recording",
    "summarise what happens in this audio", "tell me what this recording contains",
    "write a description of this sound clip",
]
_CAPTION_Q = ["What do you hear?", "What is going on in this audio?", "What can be heard in this clip?",
              "What does this recording contain?", "What is happening in this recording?"]
_SHORT = [
    "give a one-sentence caption of this audio", "describe this audio briefly", "write a short caption for this clip",
    "sum up this recording in one sentence", "describe the clip in a few words",
]
_SPEECH_CAPTION = [
    "describe the speaker's voice", "describe how the person speaks", "characterise the speech in this clip",
    "describe the voice and delivery of the speaker", "describe the speaking style",
    "tell me about the speaker's voice, pace and loudness",
]
_ASR = [
    "transcribe the speech", "transcribe this audio", "transcribe the recording", "transcribe this clip",
    "write down what is said", "write out what the speaker says", "write down the spoken words",
    "give me a transcript of this recording", "give me the transcript", "provide a transcript of the speech",
    "provide a verbatim transcript", "convert the speech to text", "convert this audio to text",
    "turn this speech into text", "write the words you hear", "transcribe the clip word for word",
    "write down exactly what is spoken", "produce a transcription of this audio",
    "type out what is being said", "transcribe what the speaker says",
    "transcribe the speech in its original language", "write out the spoken content",
    "note down everything that is said", "transcribe the spoken words in this audio",
    "recognise the speech and write it down", "give the exact words spoken in this clip",
    "write down the dialogue", "transcribe the utterance", "transcribe the speech in this segment",
    "write the transcript of this audio", "render the speech as text", "put what is said into writing",
    "write down the words in the language they are spoken", "transcribe the audio without translating it",
]
_ASR_TS_WORDS = [
    "transcribe the speech with word timestamps", "transcribe the audio with a start and end time for each word",
    "write down what is said, with timestamps for every word",
    "give a word-level timestamped transcript", "transcribe each word with its start and end time in seconds",
    "transcribe the speech and mark when each word starts and ends",
    "write each word preceded by its time span as [start-end]", "produce a timestamped transcription, word by word",
]
_ASR_TS_PHRASES = [
    "transcribe the speech with timestamps for each phrase", "give a timestamped transcript, phrase by phrase",
    "transcribe the audio in short phrases, each with its start and end time",
    "write down what is said in phrases, each preceded by [start-end] in seconds",
    "produce a phrase-level timestamped transcription",
]
_SPEAKER_TS = [
    "say who speaks when", "list the speaker turns with their times", "give the start and end time of each speaker turn",
    "diarize this recording", "mark when each speaker talks", "list who is talking and when",
]
_EVENT_DENSE = [
    "list every sound event with its start and end time, one event per line as start_sec - end_sec: event",
    "give the timeline of sound events, one per line, in plain decimal seconds",
    "list the sound events in this audio with their times", "detect the sound events and when they happen",
    "write out when each sound occurs, one event per line",
]
_EVENT_WHEN = ["When does the {label} sound occur?", "At what time can the {label} be heard?",
               "When do you hear the {label}?", "Give the start and end time of the {label}.",
               "Where in the clip is the {label}? Answer with start_sec - end_sec.",
               "Find the {label} in this recording and say when it happens.",
               "Between which times is the {label} audible?", "When does the {label} start and stop?"]
_EVENT_BETWEEN = ["What happens between {start} s and {end} s?", "What can be heard from {start} s to {end} s?",
                  "Which sounds occur between second {start} and second {end}?",
                  "Describe the sound events between {start} and {end} seconds.",
                  "List the events that overlap the span {start}-{end} s.",
                  "What is audible in the window from {start} s to {end} s?"]
_MUSIC = {
    "tempo": ["What is the tempo of this music?", "How fast is this piece, in BPM?", "Estimate the tempo.",
              "What is the BPM?", "How many beats per minute does this music have?", "What tempo is this played at?"],
    "key": ["What key is this music in?", "Which key and mode is this piece in?", "Name the key of this music.",
            "Is this in a major or minor key, and which one?", "What is the tonal centre of this piece?"],
    "meter": ["What is the time signature?", "What meter is this music in?", "How many beats are in a bar?",
              "Is this in 3/4 or 4/4, or another meter?"],
    "instruments": ["Which instruments can you hear?", "What instruments are playing?", "Name the instruments in this clip.",
                    "What is the instrumentation?", "Which instruments does this music use?"],
    "genre": ["What genre is this music?", "Which musical style is this?", "How would you classify this music by genre?",
              "What kind of music is this?"],
    "vocals": ["Are there vocals in this music?", "Does someone sing in this piece?", "Is this music instrumental?",
               "Can you hear a singing voice?"],
}
_AUDIO_QA = {
    "count_speakers": ["How many people speak in this clip?", "How many speakers are there?",
                       "How many different voices can you hear?", "Count the speakers in this recording."],
    "language": ["What language is spoken?", "Which language does the speaker use?", "Identify the spoken language.",
                 "In what language is this speech?"],
    "has_music": ["Is there music in this recording?", "Can you hear any music?", "Does this clip contain music?"],
    "has_speech": ["Does anyone speak in this recording?", "Is there speech in this clip?", "Can you hear a voice talking?"],
    "main_sound": ["What is the most prominent sound?", "What sound dominates this clip?", "What is the main sound here?",
                   "Which sound is heard most?"],
    "duration": ["How long is this clip?", "What is the duration of this recording?", "How many seconds does this audio last?"],
    "content": ["What kind of audio is this?", "Is this speech, music or other sounds?", "What type of content is in this clip?",
                "Classify this audio: speech, music, other sounds, or a mix."],
}
_REASONING = {
    "speech_over_music": ["Is the speaker talking over music, and what is the tempo?",
                          "Is there music behind the voice? If so, how fast is it?",
                          "Does someone speak while music plays, and at what tempo is the music?"],
    "speech_rate": ["How many words are spoken, and how fast is the speech?",
                    "Count the words and work out the speaking rate.",
                    "How quickly does the speaker talk? Reason from the number of words and the time they take."],
    "event_order": ["Which sound comes first, and how long after it does the next one start?",
                    "Put the first two sound events in order and give the gap between their starts.",
                    "What is heard first, what follows, and how many seconds apart do they begin?"],
    "longest_event": ["Which sound event lasts longest, and for how long?",
                      "Of the sounds in this clip, which is the longest, and what is its duration?"],
    "beats": ["How many beats are in this clip, and what tempo do they imply?",
              "Count the beats and work out the tempo from their spacing.",
              "From the beat positions, what is the tempo?"],
}

PROMPTS: dict[str, dict[str, list[str]]] = {
    "caption": {"detailed": _wrap(_CAPTION[:5]) + _CAPTION_Q + _wrap(_CAPTION[5:], WRAPPERS[:2]),
                "short": _wrap(_SHORT)},
    "speech_caption": {"attributes": _wrap(_SPEECH_CAPTION)},
    "asr": {"plain": _wrap(_ASR)},
    "asr_ts": {"words": _wrap(_ASR_TS_WORDS), "phrases": _wrap(_ASR_TS_PHRASES)},
    "speaker_ts": {"turns": _wrap(_SPEAKER_TS)},
    "music_qa": _MUSIC,
    "event_localisation": {"dense": _wrap(_EVENT_DENSE), "when": _EVENT_WHEN, "between": _EVENT_BETWEEN},
    "audio_qa": _AUDIO_QA,
    "reasoning": _REASONING,
}


def prompt_bank(task: str, kind: str) -> list[str]:
    return PROMPTS[task][kind]


def n_variants(task: str) -> int:
    return sum(len(v) for v in PROMPTS[task].values())
